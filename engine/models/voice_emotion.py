"""Speech emotion in the fast path: Whisper-base encoder (CTranslate2) → a small trained head (ONNX).

Why this design: the `lite` profile already ships Whisper-base for transcripts, and its encoder states
carry a lot of paralinguistic information (tone, effort, tempo), so a head of a few hundred KB trained
on labelled emotional speech (`affectstream train voice`) gives 7-class probabilities without any new
weights from outside. The encoder accepts short inputs (a 2 s window is 100 encoder frames, a few tens
of ms on one core), so it runs on every window with speech, batched across the windows of a call.

The head is one ONNX file: input `frames` (batch, time, 512) float32 encoder states plus `mask`
(batch, time) float32 (1 = real frame), output `probs` (batch, 7), already temperature-calibrated on
held-out speakers. Its metadata (ONNX `metadata_props`) records the labels, the temperature and the
audio context it was trained with, so a retrained head carries its own settings. The training code
(`train/voice/`) uses `WhisperEncoder` below, so training and runtime features are the same numbers.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.runtimes.base import ModelFileError, Runtime, RuntimeUnavailable

log = logging.getLogger("affectstream.voice_emotion")

SAMPLE_RATE = 16_000
MEL_HOP = 160  # Whisper log-mel: 10 ms hop; the encoder halves it (20 ms per state)
MIN_SAMPLES = 3_200  # < 0.2 s of audio says nothing about emotion
ENCODER_DIM = 512  # Whisper-base


@dataclass(slots=True)
class HeadInfo:
    """What a trained head says about itself (ONNX metadata), with the defaults of the shipped head."""

    labels: tuple[str, ...] = EMOTIONS
    temperature: float = 1.0
    context_s: float = 4.0  # seconds of audio (ending at the window end) the head was trained on
    compute_type: str = "int8"  # CTranslate2 compute type of the encoder the features came from
    cv_uar: float | None = None  # speaker-disjoint cross-validated UAR, for reliability weighting
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> HeadInfo:
        raw = meta.get("affectstream_voice_head")
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(
            labels=tuple(d.get("labels", EMOTIONS)),
            temperature=float(d.get("temperature", 1.0)),
            context_s=float(d.get("context_s", 4.0)),
            compute_type=str(d.get("compute_type", "int8")),
            cv_uar=None if d.get("cv_uar") is None else float(d["cv_uar"]),
            extra={k: v for k, v in d.items() if k not in cls.__slots__},  # type: ignore[attr-defined]
        )

    def to_metadata(self) -> dict[str, str]:
        d = {
            "labels": list(self.labels),
            "temperature": self.temperature,
            "context_s": self.context_s,
            "compute_type": self.compute_type,
            "cv_uar": self.cv_uar,
            **self.extra,
        }
        return {"affectstream_voice_head": json.dumps(d, sort_keys=True)}


def read_head_info(path: str | Path) -> HeadInfo:
    """The head's metadata, read with a throw-away CPU session (the file is KBs; runtimes such as
    TensorRT do not expose ONNX metadata)."""
    import onnxruntime as ort

    path = Path(path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise ModelFileError(f"voice-emotion head {path} cannot be loaded: {e}") from e
    return HeadInfo.from_metadata(dict(sess.get_modelmeta().custom_metadata_map))


class WhisperEncoder:
    """Whisper-base encoder states for short audio, via CTranslate2 (no decoder, no transcript).

    `encode` pads nothing: every input is encoded at its own length (inputs of equal length share one
    batched call), because Whisper's full self-attention would let padding change the real frames.
    """

    def __init__(self, model_dir: str | Path, *, threads: int = 1, compute_type: str = "int8") -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise ModelFileError(
                f"whisper model folder {model_dir} lacks model.bin; run `affectstream models prepare lite`"
            )
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as e:
            raise RuntimeUnavailable(
                f"faster-whisper not installed ({e}); pip install 'affectstream[transcript]'"
            ) from e
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(model_dir), device="cpu", compute_type=compute_type, intra_threads=int(threads)
        )
        self.n_mels = int(getattr(self.model, "n_mels", 80) or 80)
        self.features = FeatureExtractor(feature_size=self.n_mels)
        self.compute_type = compute_type
        self._lock = threading.Lock()

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """Whisper log-mel (n_mels, frames) with an even frame count (the encoder's stride is 2)."""
        a = np.clip(np.nan_to_num(np.asarray(audio, np.float32).ravel()), -1.0, 1.0)
        m = self.features(a, padding=0)
        n = (m.shape[1] // 2) * 2
        return np.ascontiguousarray(m[:, : max(n, 2)], dtype=np.float32)

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states (frames, 512) float32 for each 16 kHz mono clip."""
        mels = [self.mel(a) for a in audios]
        out: list[np.ndarray | None] = [None] * len(mels)
        by_len: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            by_len.setdefault(m.shape[1], []).append(i)
        for _, idx in sorted(by_len.items()):
            batch = np.stack([mels[i] for i in idx])
            with self._lock:
                sv = self.model.encode(self._ct2.StorageView.from_array(batch), to_cpu=True)
            states = np.asarray(sv, dtype=np.float32)
            for j, i in enumerate(idx):
                out[i] = states[j]
        return [o for o in out if o is not None]


def pad_frames(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length state sequences into (batch, time, dim) plus a (batch, time) mask."""
    t = max(len(s) for s in states)
    d = states[0].shape[1]
    x = np.zeros((len(states), t, d), np.float32)
    mask = np.zeros((len(states), t), np.float32)
    for i, s in enumerate(states):
        x[i, : len(s)] = s
        mask[i, : len(s)] = 1.0
    return x, mask


class VoiceEmotionModel:
    """Whisper encoder + trained head → calibrated 7-class probabilities per audio clip."""

    def __init__(self, encoder: WhisperEncoder, head: Runtime, info: HeadInfo) -> None:
        if tuple(info.labels) != EMOTIONS:
            raise ModelFileError(f"voice-emotion head speaks {info.labels}, expected {EMOTIONS}")
        self.encoder = encoder
        self.head = head
        self.info = info
        self.runtime = head

    @classmethod
    def from_profile(cls, prof: Any, *, threads: int = 1, runtime: str = "cpu") -> VoiceEmotionModel:
        """Load the profile's `voice_emotion` head (hash-verified with the profile) and its `whisper`."""
        from affectstream.engine.runtimes.select import load_runtime

        prof.verify(["voice_emotion", "whisper"])
        path = prof.path("voice_emotion")
        info = read_head_info(path)
        encoder = WhisperEncoder(prof.path("whisper"), threads=threads, compute_type=info.compute_type)
        return cls(encoder, load_runtime(path, runtime, threads=1), info)

    @property
    def context_samples(self) -> int:
        return round(self.info.context_s * SAMPLE_RATE)

    def predict_states(self, states: list[np.ndarray]) -> np.ndarray:
        """Head on precomputed encoder states (training/eval share this with `predict`)."""
        if not states:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        x, mask = pad_frames(states)
        out = self.head.run({"frames": x, "mask": mask})
        p = np.asarray(out.get("probs", next(iter(out.values()))), np.float64)
        p = np.clip(p, 0.0, None)
        return (p / np.maximum(p.sum(1, keepdims=True), 1e-12)).astype(np.float32)

    def predict(self, audios: list[np.ndarray]) -> np.ndarray:
        """(n, 7) probabilities; clips shorter than 0.2 s get uniform scores (nothing to say)."""
        res = np.full((len(audios), len(EMOTIONS)), 1.0 / len(EMOTIONS), np.float32)
        ok = [i for i, a in enumerate(audios) if np.asarray(a).size >= MIN_SAMPLES]
        if ok:
            clips = [np.asarray(audios[i], np.float32)[-self.context_samples :] for i in ok]
            res[ok] = self.predict_states(self.encoder.encode(clips))
        return res

    def warmup(self) -> None:
        self.predict([np.random.default_rng(0).normal(0, 0.05, 2 * SAMPLE_RATE).astype(np.float32)])
