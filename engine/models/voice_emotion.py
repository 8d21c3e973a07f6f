"""Speech emotion in the fast path: Whisper-base encoder (CTranslate2) → a small trained head (ONNX).

Why this design: the `lite` profile already ships Whisper-base for transcripts, and its encoder states
carry a lot of paralinguistic information (tone, effort, tempo), so a head of about a MB trained on
labelled emotional speech (`affectstream train voice`) gives 7-class probabilities without any new
weights from outside.

Why pieces: the head hears the last 4 s of a stream's speech, but a stream's windows overlap (2 s
every 1 s), and encoding 4 s at every window added 30-60 ms per window (bench/RESULTS.md, voice). The
shipped head is trained on its 4 s context cut into 2 s pieces whose ends are 1 s apart, each encoded
on its own (`HeadInfo.chunk_s`/`stride_s`): exactly the pieces a stream's windows are, so each window
encodes only its own 2 s (12-16 ms on one core) and reuses the states its predecessors encoded
(`StreamContext`). 1 s and 1.5 s pieces were cheaper but lost 3-11 points of UAR (the README's "How
accurate is it"). A head with `chunk_s` = 0 encodes its whole context in one pass at every window.

The head is one ONNX file: input `frames` (batch, time, 512) float32 encoder states plus `mask`
(batch, time) float32 (1 = real frame), output `probs` (batch, 7), already temperature-calibrated on
held-out speakers. Its metadata (ONNX `metadata_props`) records the labels, the temperature, the
context and how it was cut, so a retrained head carries its own settings. The training code
(`train/voice/`) uses `WhisperEncoder` and `encode_chunked` below, so training and runtime features are
the same numbers.
"""

from __future__ import annotations

import collections
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
    # > 0: the context is encoded in pieces of at most this many seconds, each on its own (a stream
    # encodes only its new audio per window and reuses the states of the pieces before); 0: in one pass
    chunk_s: float = 0.0
    # spacing of the pieces' ends (0: = chunk_s, back to back); smaller than chunk_s, pieces overlap,
    # e.g. 2 s pieces every 1 s: each window's own audio, as a stream with a 1 s hop encodes anyway
    stride_s: float = 0.0
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
            chunk_s=float(d.get("chunk_s", 0.0)),
            stride_s=float(d.get("stride_s", 0.0)),
            cv_uar=None if d.get("cv_uar") is None else float(d["cv_uar"]),
            extra={k: v for k, v in d.items() if k not in cls.__slots__},  # type: ignore[attr-defined]
        )

    def to_metadata(self) -> dict[str, str]:
        d = {
            "labels": list(self.labels),
            "temperature": self.temperature,
            "context_s": self.context_s,
            "compute_type": self.compute_type,
            "chunk_s": self.chunk_s,
            "stride_s": self.stride_s,
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
        self.samples_encoded = 0  # audio fed to the encoder so far (runtime_info: cost of the voice model)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """Whisper log-mel (n_mels, frames) with an even frame count (the encoder's stride is 2)."""
        a = np.clip(np.nan_to_num(np.asarray(audio, np.float32).ravel()), -1.0, 1.0)
        m = self.features(a, padding=0)
        n = (m.shape[1] // 2) * 2
        return np.ascontiguousarray(m[:, : max(n, 2)], dtype=np.float32)

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states (frames, 512) float32 for each 16 kHz mono clip."""
        mels = [self.mel(a) for a in audios]
        self.samples_encoded += sum(np.asarray(a).size for a in audios)
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


def split_chunks(audio: np.ndarray, chunk_samples: int, stride_samples: int = 0) -> list[np.ndarray]:
    """Pieces of `chunk_samples` whose ends step back from the clip's end by `stride_samples` (default:
    back to back), in time order. Only whole pieces, as a stream has them (its windows are whole); a
    clip shorter than one piece is one piece."""
    a = np.asarray(audio, np.float32).ravel()
    if chunk_samples <= 0 or len(a) <= chunk_samples:
        return [a]
    ends = range(len(a), chunk_samples - 1, -(stride_samples or chunk_samples))
    return [a[e - chunk_samples : e] for e in reversed(ends)]


def encode_chunked(
    encoder: WhisperEncoder, audios: list[np.ndarray], chunk_s: float, stride_s: float = 0.0
) -> list[np.ndarray]:
    """Encoder states of each clip encoded in `chunk_s` pieces (ends `stride_s` apart), each on its
    own, concatenated in time (all pieces of all clips in one batched call): what a streaming head sees.
    `chunk_s` = 0 encodes each clip in one pass."""
    pieces = [split_chunks(a, round(chunk_s * SAMPLE_RATE), round(stride_s * SAMPLE_RATE)) for a in audios]
    flat = encoder.encode([p for ps in pieces for p in ps])
    out, k = [], 0
    for ps in pieces:
        out.append(np.concatenate(flat[k : k + len(ps)]))
        k += len(ps)
    return out


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


@dataclass(slots=True)
class _Piece:
    start: int  # stream sample positions [start, end)
    end: int
    states: np.ndarray | None  # encoder states of this piece encoded alone (chunked heads)
    audio: np.ndarray | None = None  # the piece's audio (heads that encode the context in one pass)


class StreamContext:
    """One stream's recent speech for the voice head: encoder states of pieces (chunked heads) or audio.

    Why: consecutive windows overlap (2 s windows every 1 s by default) and the head hears the last
    `context_s` (4 s) of speech, so encoding that context at every window costs twice the encoder time
    of encoding the window alone (bench/RESULTS.md, voice). A head trained on a context cut into `chunk_s` pieces encoded
    alone (`HeadInfo.chunk_s`, cut back from the end) lets each window encode only its newest piece
    (the last `chunk_s` of the window) and reuse the states of the pieces before it, encoded by earlier
    windows. A window shorter than a piece (a file's last window, or windows set shorter than
    `chunk_s`) is extended back with the stream's last `chunk_s` of audio, kept here, so every piece is
    whole, as in training. Windows without speech are consumed unencoded, so the context holds speech,
    not the silences between phrases. A clock that goes back (a restarted or looped source) starts over.
    """

    def __init__(self, context_s: float, chunk_s: float, stride_s: float = 0.0) -> None:
        self.context = round(context_s * SAMPLE_RATE)
        self.chunk = round(chunk_s * SAMPLE_RATE)
        self.stride = round(stride_s * SAMPLE_RATE) or self.chunk
        self.pieces: collections.deque[_Piece] = collections.deque()
        self.done: int | None = None  # stream sample position up to which audio was consumed
        self.tail = np.zeros(0, np.float32)  # the stream's last `chunk` samples of audio (chunked heads)
        self.tail_end: int | None = None  # stream sample position where `tail` ends

    def _span(self, start_s: float, n: int) -> tuple[int, int]:
        start = round(start_s * SAMPLE_RATE)
        if self.done is not None and start + n < self.done - SAMPLE_RATE // 2:
            self.pieces.clear()  # the clock went back
            self.done = None
            self.tail, self.tail_end = np.zeros(0, np.float32), None
        return start, start + n

    def plan(self, start_s: float, audio: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The pieces `(start, audio)` this speech window must encode: its newest `chunk_s`, and older
        pieces of it only while they hold audio not encoded yet (hops longer than a piece). Heads that
        encode the context in one pass keep the window's new audio instead and get nothing to encode."""
        start, end = self._span(start_s, len(audio))
        if self.chunk <= 0:
            first = start if self.done is None else max(start, self.done)
            if end - first > 0:
                self.pieces.append(_Piece(first, end, None, audio[first - start :]))
                self.done = end
            return []
        start, audio = self._extend(start, audio)
        out: list[tuple[int, np.ndarray]] = []
        e = end
        while e > start and (self.done is None or e > self.done) and e > end - self.context:
            s = max(start, e - self.chunk)
            if e - s < MIN_SAMPLES:
                break
            out.append((s, audio[s - start : e - start]))
            e = s
        # consumed now, not when the states arrive: a later window of the same batch plans after this one
        self.done = end if self.done is None else max(self.done, end)
        return out[::-1]

    def _extend(self, start: int, audio: np.ndarray) -> tuple[int, np.ndarray]:
        """The window's audio, preceded by kept stream audio when the window is shorter than a piece and
        continues the stream; the kept tail becomes this audio's last `chunk` samples."""
        end = start + len(audio)
        te = self.tail_end
        if te is not None and te > end:
            return start, audio  # an older window than the kept audio: nothing to keep or add
        if len(audio) < self.chunk and te is not None and start <= te and len(self.tail):
            before = self.tail[: max(0, len(self.tail) - (te - start))]
            start, audio = start - len(before), np.concatenate([before, audio])
        self.tail, self.tail_end = np.asarray(audio[-self.chunk :], np.float32).copy(), end
        return start, audio

    def add(self, pieces: list[tuple[int, np.ndarray]], states: list[np.ndarray]) -> None:
        """Keep the states of the pieces `plan` returned (it has already moved `done` past them)."""
        for (s, a), st in zip(pieces, states, strict=True):
            self.pieces.append(_Piece(s, s + len(a), st))

    def skip(self, start_s: float, audio: np.ndarray) -> None:
        """A window without speech: consumed, not encoded (its audio may still begin a later piece)."""
        start, end = self._span(start_s, len(audio))
        if self.chunk > 0:
            self._extend(start, audio)
        self.done = end if self.done is None else max(self.done, end)

    def recent(self, end: int) -> list[_Piece]:
        """The context at `end`: chunked heads get pieces walking back from the newest whose ends are
        `stride` apart (the grid the head was trained on), unchunked heads the audio of the last
        `context_s`."""
        while self.pieces and self.pieces[0].end <= end - self.context:
            self.pieces.popleft()
        if self.chunk <= 0:
            return list(self.pieces)
        tol = SAMPLE_RATE // 50
        picked: list[_Piece] = []
        for p in reversed(self.pieces):
            if p.end > end + tol or p.start < end - self.context - tol:
                continue
            if not picked or p.end <= picked[-1].end - self.stride + tol:
                picked.append(p)
        return picked[::-1]


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

    def encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states of whole clips, cut the way the head was trained (`HeadInfo.chunk_s`)."""
        return encode_chunked(self.encoder, clips, self.info.chunk_s, self.info.stride_s)

    def predict(self, audios: list[np.ndarray]) -> np.ndarray:
        """(n, 7) probabilities for independent clips (their last `context_s`); clips shorter than
        0.2 s get uniform scores (nothing to say). Streams use `predict_windows`."""
        res = np.full((len(audios), len(EMOTIONS)), 1.0 / len(EMOTIONS), np.float32)
        ok = [i for i, a in enumerate(audios) if np.asarray(a).size >= MIN_SAMPLES]
        if ok:
            clips = [np.asarray(audios[i], np.float32)[-self.context_samples :] for i in ok]
            res[ok] = self.predict_states(self.encode(clips))
        return res

    def predict_windows(
        self, windows: list[tuple[StreamContext, float, np.ndarray, bool]]
    ) -> list[np.ndarray | None]:
        """Probabilities for stream windows `(context, start_s, audio, has_speech)`, in order: `None`
        for windows without speech (their audio is consumed unencoded). Only each window's newest piece
        is encoded (all windows' pieces in one batched encoder call); all heads run in one call."""
        plans: list[tuple[int, list[tuple[int, np.ndarray]]]] = []
        for k, (ctx, start_s, audio, speech) in enumerate(windows):
            a = np.asarray(audio, np.float32)
            if speech:
                plans.append((k, ctx.plan(start_s, a)))
            else:
                ctx.skip(start_s, a)
        flat = [a for _, ps in plans for _, a in ps]
        states = iter(self.encoder.encode(flat) if flat else [])
        for k, ps in plans:
            windows[k][0].add(ps, [next(states) for _ in ps])
        todo: list[int] = []
        feats: list[np.ndarray] = []
        whole: list[np.ndarray] = []
        for k, _ in plans:
            ctx, start_s, audio, _ = windows[k]
            recent = ctx.recent(round(start_s * SAMPLE_RATE) + len(audio))
            if self.info.chunk_s > 0 and recent:
                todo.append(k)
                feats.append(np.concatenate([p.states for p in recent if p.states is not None]))
            elif recent and sum(len(p.audio) for p in recent if p.audio is not None) >= MIN_SAMPLES:
                todo.append(k)
                whole.append(np.concatenate([p.audio for p in recent if p.audio is not None]))
        if whole:
            feats = self.encoder.encode([w[-self.context_samples :] for w in whole])
        res: list[np.ndarray | None] = [None] * len(windows)
        for k, _ in plans:
            res[k] = np.full(len(EMOTIONS), 1.0 / len(EMOTIONS), np.float32)  # speech, too short to say
        if todo:
            for k, p in zip(todo, self.predict_states(feats), strict=True):
                res[k] = p
        return res

    def stream_context(self) -> StreamContext:
        """A new per-stream context with this head's settings."""
        return StreamContext(self.info.context_s, self.info.chunk_s, self.info.stride_s)

    def warmup(self) -> None:
        self.predict([np.random.default_rng(0).normal(0, 0.05, 2 * SAMPLE_RATE).astype(np.float32)])
