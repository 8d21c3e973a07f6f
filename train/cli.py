"""Entry points the `affectstream` CLI wires in: `train sft|grpo --config FILE` and `eval`.

A config is TOML (or JSON) with sections `[model]`, `[lora]`, `[data]`, `[sft]` or `[grpo]`,
`[export]`, `[eval]`; see train/configs/. Every stage writes metrics JSONL and a resumable
checkpoint under its `output_dir`, and saves its adapter both as `adapter.pt` (PEFT state, to
continue training) and as a GGUF adapter for llama.cpp.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomllib
from affectstream.engine.labels import EMOTIONS


def load_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        cfg = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{p}: bad config ({e})") from e
    return _expand(cfg)


DEFAULT_RUN = "~/.cache/affectstream/runs/lite-evidence"


def _expand(v: Any) -> Any:
    """`$AFFECTSTREAM_RUN` (default DEFAULT_RUN) and other env vars in config strings: one config,
    any run folder (train/run_lite.sh sets RUN)."""
    import os

    if isinstance(v, dict):
        return {k: _expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_expand(x) for x in v]
    if isinstance(v, str) and "$" in v:
        env = {**os.environ}
        env.setdefault("AFFECTSTREAM_RUN", DEFAULT_RUN)
        return os.path.expandvars(
            v.replace("$AFFECTSTREAM_RUN", env["AFFECTSTREAM_RUN"]).replace(
                "${AFFECTSTREAM_RUN}", env["AFFECTSTREAM_RUN"]
            )
        )
    return v


def _dc(cls: type, section: dict[str, Any]) -> Any:
    section = {
        k: (str(Path(v).expanduser()) if k.endswith("_dir") and isinstance(v, str) else v)
        for k, v in section.items()
    }
    known = {f.name for f in fields(cls)}
    bad = sorted(set(section) - known)
    if bad:
        raise ValueError(f"unknown {cls.__name__} keys {bad}; known: {sorted(known)}")
    return cls(**section)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pieces


def _lora_settings(cfg: dict[str, Any], n_layers: int) -> Any:
    from affectstream.train.model import LoraSettings

    sec = dict(cfg.get("lora", {}))
    top = sec.pop("top_layers", None)
    s = _dc(LoraSettings, {**sec, "targets": tuple(sec.get("targets", LoraSettings().targets))})
    if top:
        s.layers = list(range(n_layers - int(top), n_layers))
    return s


def _samples(cfg: dict[str, Any], split: str) -> list[Any]:
    from affectstream.train.cues import build_splits, load_jsonl

    d = cfg.get("data", {})
    sizes = {k: int(d.get(f"n_{k}", v)) for k, v in (("train", 1200), ("val", 150), ("test", 300))}
    faces = float(d.get("analyzer_faces", 0.0))  # share of faces as the lite analyzer reports them
    voice = bool(d.get("voice_model", True))
    out = build_splits(sizes["train"], sizes["val"], sizes["test"], voice, faces)[split]
    for extra in d.get(f"{split}_jsonl", []):
        out += load_jsonl(Path(extra).expanduser())
    return out


def _layout(cfg: dict[str, Any]) -> str:
    from affectstream.engine.llm.prompt import DEFAULT_LAYOUT

    return str(cfg.get("data", {}).get("layout", DEFAULT_LAYOUT))


def _adapter_out(cfg: dict[str, Any], out_dir: Path) -> str | None:
    """The GGUF adapter path of a stage: relative paths live in the stage's run folder.

    Training never writes the shipped adapter (train/artifacts/, pinned by hash): promoting a run's
    adapter is the explicit `python -m affectstream.train.promote` step.
    """
    a = cfg.get("export", {}).get("adapter")
    if not a:
        return None
    p = Path(a).expanduser()
    p = p if p.is_absolute() else out_dir / p
    if p.resolve().parent == (Path(__file__).parent / "artifacts").resolve():
        raise ValueError(f"export.adapter {p} is in the shipped artifacts folder; train into a run folder")
    return str(p)


def _load_model(cfg: dict[str, Any], adapter: str | None = None) -> tuple[Any, Any, Any]:
    """(peft model, tokenizer, lora settings); `adapter` = an `adapter.pt` to start from."""
    import torch
    from affectstream.train.model import add_lora, default_gguf, load_base
    from peft import set_peft_model_state_dict

    m = cfg.get("model", {})
    gguf = m.get("gguf") or default_gguf()
    _log(f"loading {gguf}")
    base, tok = load_base(gguf, threads=int(m.get("threads", 2)))
    if m.get("seed") is not None:
        torch.manual_seed(int(m["seed"]))
    if adapter:
        ck = torch.load(Path(adapter).expanduser(), map_location="cpu", weights_only=False)
        from affectstream.train.model import LoraSettings

        lora = LoraSettings(**{**ck["lora"], "targets": tuple(ck["lora"]["targets"])})
        model = add_lora(base, lora)
        set_peft_model_state_dict(model, ck["state"])
        _log(f"adapter loaded from {adapter}")
    else:
        lora = _lora_settings(cfg, base.config.num_hidden_layers)
        model = add_lora(base, lora)
    return model, tok, lora


def save_adapter(model: Any, lora: Any, out_dir: Path, gguf_path: str | None) -> None:
    import dataclasses

    import torch
    from affectstream.train.export_lora import export_peft_model
    from peft import get_peft_model_state_dict

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"lora": dataclasses.asdict(lora), "state": get_peft_model_state_dict(model)}, out_dir / "adapter.pt"
    )
    if gguf_path:
        p = export_peft_model(model, gguf_path)
        _log(f"GGUF adapter written: {p} ({p.stat().st_size / 1e6:.1f} MB)")


# --------------------------------------------------------------------------- stages


def select_sft_samples(samples: list[Any], d: dict[str, Any], seed: int = 0) -> list[Any]:
    """The SFT examples of a cue set under the `[data]` options, shuffled with `seed`.

    - `n_sft`: the first n synthetic samples, plus every real one;
    - `sft_consistent_only`: synthetic samples only where the strongest cue names the label
      (`cues.consistent`); real ones stay (their targets cite what was measured, the label is human);
    - `real_consistent_only`: the same rule for real windows. Why: where the voice head is wrong, a
      target citing its top score while answering the human label teaches answers the think does not
      support; run 3 kept them and its answers overrode right fast labels more often than wrong ones;
    - `no_speech_share`: that share of the real windows again as a VAD miss (`cues.without_speech`).
    """
    import random

    from affectstream.train.cues import consistent, without_speech

    n_sft = int(d.get("n_sft", 0))
    out = samples[:n_sft] + [s for s in samples if s.kind == "real"] if n_sft else list(samples)
    if d.get("sft_consistent_only"):
        out = [s for s in out if s.kind == "real" or consistent(s)]
    if d.get("real_consistent_only"):
        out = [s for s in out if s.kind != "real" or consistent(s)]
    rng = random.Random(seed)
    share = float(d.get("no_speech_share", 0.0))
    if share > 0:
        real = [s for s in out if s.kind == "real" and s.evidence.speech]
        out += [without_speech(s) for s in rng.sample(real, round(share * len(real)))]
    rng.shuffle(out)
    return out


def run_sft(cfg: dict[str, Any], resume: bool = False) -> Path:
    from affectstream.train.cues import target_completion
    from affectstream.train.model import encode, prompt_text
    from affectstream.train.sft import SFTConfig, SFTExample, SFTTrainer

    sc = _dc(SFTConfig, dict(cfg.get("sft", {})))
    model, tok, lora = _load_model(cfg)
    model.print_trainable_parameters()
    samples = _samples(cfg, "train")
    d = cfg.get("data", {})
    samples = select_sft_samples(samples, d, seed=int(cfg.get("model", {}).get("seed", 0)))
    _log(f"SFT samples: {len(samples)} ({sum(s.kind == 'real' for s in samples)} real)")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    layout = _layout(cfg)
    style = str(d.get("think", "full"))  # "short": one-sentence thinks (cues.target_think)
    examples = [
        SFTExample(
            encode(tok, prompt_text(tok, s.evidence, layout=layout)),
            [*encode(tok, target_completion(s, style)), eos],
        )
        for s in samples
    ]
    tr = SFTTrainer(model, examples, tok.pad_token_id, sc)
    if resume and tr.resume():
        _log(f"resumed SFT at step {tr.step}")
    _log(f"SFT: {len(examples)} examples, {tr.total_steps} steps of {sc.batch_size}")
    tr.run()
    out = Path(sc.output_dir)
    save_adapter(model, lora, out, _adapter_out(cfg, out))
    return out / "adapter.pt"


def run_grpo(cfg: dict[str, Any], resume: bool = False) -> Path:
    import torch
    from affectstream.train.grpo import GRPOConfig, GRPOExample, GRPOTrainer, Policy
    from affectstream.train.model import encode, eos_ids, prompt_text

    g = dict(cfg.get("grpo", {}))
    init = g.pop("init_adapter", None)
    gc = _dc(GRPOConfig, {**g, "reward_funcs": tuple(g.get("reward_funcs", ("accuracy", "format")))})
    model, tok, lora = _load_model(cfg, adapter=init)
    # Reference = the starting policy (R1-Omni: a frozen copy of the SFT checkpoint), merged and frozen.
    ref = copy.deepcopy(model).merge_and_unload() if init else None
    if ref is not None:
        ref.requires_grad_(False)
        ref.eval()
    policy = Policy(model, eos_ids(tok), tok.pad_token_id, ref_model=ref)
    samples = _samples(cfg, "train")
    n_sft = int(cfg.get("data", {}).get("n_sft", 0))  # synthetic GRPO prompts are ones SFT did not see
    real = [s for s in samples if s.kind == "real"]
    samples = [s for s in samples[n_sft:] if s.kind != "real"] + real or samples
    layout = _layout(cfg)
    kinds = cfg.get("data", {}).get("grpo_kinds")  # optional focus on kinds where rewards vary
    if kinds:
        samples = [s for s in samples if s.kind in kinds] or samples
    examples = [
        GRPOExample(
            {"input_ids": torch.tensor([encode(tok, prompt_text(tok, s.evidence, layout=layout))])},
            s.label,
            {"kind": s.kind, "evidence": s.evidence},
        )
        for s in samples
    ]
    tr = GRPOTrainer(policy, examples, lambda ids: tok.decode(ids, skip_special_tokens=True), gc)
    if resume and tr.resume():
        _log(f"resumed GRPO at step {tr.step}")
    _log(
        f"GRPO: {len(examples)} prompts, {gc.steps} steps, G={gc.num_generations}, beta={gc.beta}, lr={gc.learning_rate}"
    )
    tr.run()
    out = Path(gc.output_dir)
    save_adapter(model, lora, out, _adapter_out(cfg, out))
    return out / "adapter.pt"


def _completions_llama(
    cfg: dict[str, Any], spec: dict[str, Any], samples: list[Any], max_tokens: int, grammar: bool
) -> list[str]:
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.prompt import chat_messages
    from affectstream.train.evaluate import generate_llama
    from affectstream.train.model import default_gguf

    gguf = spec.get("gguf") or cfg.get("model", {}).get("gguf") or str(default_gguf())
    lm = LlamaCppLM(gguf, threads=int(cfg.get("model", {}).get("threads", 2)), lora_path=spec.get("lora"))
    layout = spec.get("layout") or _layout(cfg)
    try:
        prompts = [lm.chat_prompt(chat_messages(s.evidence, EMOTIONS, layout=layout)) for s in samples]
        return generate_llama(lm, prompts, max_tokens=max_tokens, grammar=grammar)
    finally:
        lm.close()


def _completions_hf(
    cfg: dict[str, Any], spec: dict[str, Any], samples: list[Any], max_tokens: int
) -> list[str]:
    """transformers fallback (no llama.cpp): the fp32 model + the `adapter.pt` the stage saved."""
    from affectstream.train.evaluate import generate_hf
    from affectstream.train.model import load_base, prompt_text

    adapter = spec.get("adapter")
    if adapter:
        model, tok, _ = _load_model(cfg, adapter=str(Path(adapter).expanduser()))
    else:
        from affectstream.train.model import default_gguf

        model, tok = load_base(cfg.get("model", {}).get("gguf") or default_gguf())
    prompts = [prompt_text(tok, s.evidence, layout=spec.get("layout") or _layout(cfg)) for s in samples]
    return generate_hf(
        model,
        tok,
        prompts,
        max_new_tokens=max_tokens,
        batch_size=int(cfg.get("eval", {}).get("batch_size", 16)),
    )


def run_eval(
    cfg: dict[str, Any], cues: Path | None = None, limit: int | None = None, out: Path | None = None
) -> dict:
    """Evaluate each `eval.models` entry (name, gguf?, lora?, adapter?), greedy, no grammar.

    backend "llama" (default): llama.cpp with the GGUF adapter — what production runs;
    backend "hf": transformers with the stage's `adapter.pt` (when llama.cpp is unavailable).
    """
    from affectstream.train.cues import load_jsonl
    from affectstream.train.evaluate import evaluate_completions, format_table

    e = cfg.get("eval", {})
    samples = load_jsonl(cues) if cues else _samples(cfg, e.get("split", "test"))
    # the config's limit sizes the synthetic split; a given cue file is evaluated whole unless --limit
    limit = limit or (None if cues else e.get("limit"))
    if limit:
        samples = samples[: int(limit)]
    models = e.get("models") or [{"name": "base"}]
    only = e.get("only")
    max_tokens = int(e.get("max_tokens", 64))
    backend = e.get("backend", "llama")
    reports, rows = {}, {}
    out_dir = Path(out or e.get("output_dir", "runs/lite/eval")).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in models:
        name = spec["name"]
        if only and name not in only:
            continue
        need = spec.get("lora") if backend == "llama" else spec.get("adapter")
        if need and not Path(need).expanduser().is_file():
            _log(f"skip {name}: {need} not found")
            continue
        t = time.perf_counter()
        if backend == "llama":
            comps = _completions_llama(cfg, spec, samples, max_tokens, bool(e.get("grammar", False)))
        else:
            comps = _completions_hf(cfg, spec, samples, max_tokens)
        rep = evaluate_completions(samples, comps, EMOTIONS)
        rows[name] = rep
        reports[name] = {
            **rep.to_dict(),
            "seconds": time.perf_counter() - t,
            "backend": backend,
            "spec": spec,
        }
        with (out_dir / f"completions_{name}.jsonl").open("w", encoding="utf-8") as f:
            for s, c in zip(samples, comps, strict=True):
                f.write(
                    json.dumps(
                        {"id": s.id, "label": s.label, "kind": s.kind, "fast": s.fast_label, "completion": c}
                    )
                    + "\n"
                )
        (out_dir / f"report_{name}.json").write_text(json.dumps(reports[name], indent=1), encoding="utf-8")
        _log(
            f"{name}: format {rep.format_rate:.1f}% WAR {rep.war:.1f}% UAR {rep.uar:.1f}% ({time.perf_counter() - t:.0f} s)"
        )
    # models evaluated by earlier invocations into the same folder stay in report.json and the table
    from dataclasses import fields as dc_fields

    from affectstream.train.evaluate import Report

    old = out_dir / "report.json"
    if old.is_file():
        prev = json.loads(old.read_text(encoding="utf-8"))
        keys = {f.name for f in dc_fields(Report)}
        for name, d in prev.items():
            if name not in reports and keys <= set(d):
                reports[name] = d
                rows = {name: Report(**{k: d[k] for k in keys}), **rows}
    table = format_table(rows)
    (out_dir / "report.json").write_text(json.dumps(reports, indent=1), encoding="utf-8")
    (out_dir / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return reports


# --------------------------------------------------------------------------- CLI hooks


def train_main(stage: str, config: str | Path, args: Any = None) -> int:
    cfg = load_config(config)
    resume = bool(getattr(args, "resume", False))
    if stage == "sft":
        run_sft(cfg, resume)
    elif stage == "grpo":
        run_grpo(cfg, resume)
    else:
        raise ValueError(f"unknown training stage {stage!r} (sft|grpo)")
    return 0


def eval_main(args: Any) -> int:
    cfg = load_config(args.config) if getattr(args, "config", None) else {}
    if getattr(args, "labels", None):
        return _eval_label_list(args)
    if getattr(args, "model", None):
        cfg.setdefault("model", {})["gguf"] = str(args.model)
        cfg.setdefault("eval", {})["models"] = [{"name": Path(args.lora).stem if args.lora else "model",
                                                 "lora": str(args.lora) if args.lora else None}]  # fmt: skip
    run_eval(
        cfg,
        cues=getattr(args, "cues", None),
        limit=getattr(args, "limit", None),
        out=getattr(args, "out", None),
    )
    return 0


def _eval_label_list(args: Any) -> int:
    """A label list with a third column of predictions (path,label,prediction) → the metrics."""
    from affectstream.train.data import read_label_rows
    from affectstream.train.evaluate import metrics

    rows = [cells for _, cells in read_label_rows(args.labels, ("path", "label", "prediction"))]
    y_true = [cells[1] for cells in rows]
    y_pred = [cells[2] for cells in rows]
    labels = sorted(set(y_true)) if not set(y_true) <= set(EMOTIONS) else list(EMOTIONS)
    rep = metrics(y_true, y_pred, labels)
    print(json.dumps(rep.to_dict(), indent=1))
    return 0
