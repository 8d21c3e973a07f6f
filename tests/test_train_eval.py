"""Evaluation numbers equal scikit-learn's on the same predictions; loaders reject bad data."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from affectstream.engine.labels import DFEW_LABELS, EMOTIONS, MAFW_LABELS
from affectstream.train.data import load_label_list, load_r1omni_json, to_r1omni_json
from affectstream.train.evaluate import INVALID, evaluate_completions, metrics, prediction


def _random_preds(seed: int, n: int = 200) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    y_true = [rng.choice(EMOTIONS[:-1]) for _ in range(n)]  # one class absent from y_true
    y_pred = [t if rng.random() < 0.5 else rng.choice([*EMOTIONS, INVALID]) for t in y_true]
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed: int) -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    y_true, y_pred = _random_preds(seed)
    rep = metrics(y_true, y_pred, EMOTIONS)
    present = sorted(set(y_true))  # R1-Omni: labels=unique(y_true)
    rec = recall_score(y_true, y_pred, average=None, labels=present, zero_division=0)
    assert rep.uar == pytest.approx(100 * rec.mean(), abs=1e-9)
    assert rep.war == pytest.approx(100 * accuracy_score(y_true, y_pred), abs=1e-9)
    w = np.array([y_true.count(k) for k in present]) / len(y_true)
    assert rep.war == pytest.approx(100 * float((w * rec).sum()), abs=1e-9)  # WAR = weighted recall
    for k, r in zip(present, rec, strict=True):
        assert rep.recall[k] == pytest.approx(100 * r)
    cm = confusion_matrix(y_true, y_pred, labels=[*EMOTIONS, INVALID])
    assert np.array_equal(np.array(rep.confusion), cm[: len(EMOTIONS)])
    assert "neutral" not in rep.recall


def test_metrics_errors() -> None:
    with pytest.raises(ValueError, match="2 labels but 1"):
        metrics(["sad", "fear"], ["sad"])
    with pytest.raises(ValueError, match="not in the label set"):
        metrics(["calm"], ["calm"])


def test_prediction_rules() -> None:
    assert prediction("<think>x</think><answer>sad</answer>") == "sad"
    assert prediction("<answer>Sad</answer>") == INVALID  # exact, like the accuracy reward
    assert prediction("sad") == INVALID  # no tags → not a usable answer
    assert prediction("<answer>sad</answer><answer>fear</answer>") == "sad"


def test_evaluate_completions_subsets() -> None:
    from affectstream.train.cues import generate

    samples = generate(40, seed=7)
    comps = [f"<think>t</think><answer>{s.label}</answer>" for s in samples]
    comps[0] = "garbage"
    rep = evaluate_completions(samples, comps)
    assert rep.format_rate == pytest.approx(100 * 39 / 40)
    assert rep.war == pytest.approx(100 * 39 / 40)
    vd = [s for s in samples if s.kind == "voice_decides"]
    assert rep.subsets["voice_decides"]["n"] == len(vd)
    exp = 100 * np.mean([s.fast_label == s.label for s in vd])
    assert rep.subsets["voice_decides"]["fusion_accuracy"] == pytest.approx(exp)


def test_label_list_loader(tmp_path) -> None:
    p = tmp_path / "list.csv"
    p.write_text("path,label\na.mp4,happy\nb.mp4, Sad \n\n# comment\nc.mp4,fear\n")
    items = load_label_list(p, DFEW_LABELS)
    assert [(i.path, i.label) for i in items] == [("a.mp4", "happy"), ("b.mp4", "sad"), ("c.mp4", "fear")]
    assert items[0].solution == "<answer> happy </answer>"
    p.write_text("a.mp4 happy\nb.mp4 calm\n")
    with pytest.raises(ValueError, match=r"list.csv:2: label 'calm'"):
        load_label_list(p, DFEW_LABELS)


def test_eval_of_a_label_list_with_predictions_uses_the_same_parser(tmp_path, capsys) -> None:
    import argparse
    import json

    from affectstream.train.cli import eval_main

    p = tmp_path / "pred.tsv"
    p.write_text("path\tlabel\tprediction\n# a comment\na.mp4\thappy\thappy\nb.mp4\tsad\t neutral \n")
    assert eval_main(argparse.Namespace(labels=p, config=None)) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 2 and rep["war"] == pytest.approx(50.0)
    p.write_text("a.mp4 happy happy\nb.mp4 sad\n")  # whitespace-separated, second row short
    with pytest.raises(ValueError, match=r"pred.tsv:2: expected 'path,label,prediction'"):
        eval_main(argparse.Namespace(labels=p, config=None))


def test_ravdess_mapping(tmp_path) -> None:
    from affectstream.engine.labels import RAVDESS_LABELS

    p = tmp_path / "r.tsv"
    p.write_text("x.wav\tfearful\ny.wav\tcalm\n")
    assert [i.label for i in load_label_list(p, RAVDESS_LABELS)] == ["fear", "calm"]


def test_r1omni_json_roundtrip(tmp_path) -> None:
    rows = [
        {"video": "v1.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<think>t</think>\n<answer>anxious</answer>"}]},
        {"video": "v2.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "happy"}]},
    ]  # fmt: skip
    p = tmp_path / "d.json"
    p.write_text(json.dumps(rows))
    items = load_r1omni_json(p, MAFW_LABELS)
    assert [(i.path, i.label) for i in items] == [("v1.mp4", "anxious"), ("v2.mp4", "happy")]
    out = to_r1omni_json(items, tmp_path / "o.json")
    assert [i.label for i in load_r1omni_json(out)] == ["anxious", "happy"]
    p.write_text(json.dumps([{"video": "v"}]))
    with pytest.raises(ValueError, match=r"d.json\[0\]: missing"):
        load_r1omni_json(p)
