"""The `lite` fast path: faces → expression scores, voice → VAD + prosody, fused into a `WindowResult`.

Per call (one window, or several windows of several streams):
1. frames not seen before are detected in ONE batched detector call (BlazeFace ONNX),
2. every face crop of every new frame is classified in ONE batched expression call,
3. each frame's detections get stable track ids from its stream's IoU tracker (once per frame), and
   the newest frame of each window gets facial actions from the face mesh (explainable cues),
4. each window's audio goes through Silero VAD (per stream over time: only chunks not yet seen),
   then prosody (pitch, energy, rate, pauses, arousal); the windows WITH speech then go through the
   speech-emotion model (Whisper-base encoder + trained head, `engine/models/voice_emotion.py`) in one
   batched call — windows without speech cost nothing,
5. per-track aggregation + voice cues are fused (`engine/fusion.py`).

Per-frame results are cached (bounded LRU keyed by stream, frame index and timestamp): with hop <
length a frame appears in several windows, and re-detecting it would double the work at length/hop=2.
Only small arrays (boxes, 7 probabilities) are cached, never images. Audio is treated the same way:
Silero runs once per stream over time (`StreamVad`), so shared audio is not re-run either. Bad frames
(wrong shape, empty) are skipped and counted; they never raise out of `analyze`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.analyzer import AnalyzerBase
from affectstream.engine.cache import LruCache
from affectstream.engine.fusion import TrackEvidence, VoiceEvidence, fuse
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.models.expression import ExpressionModel, to_gray
from affectstream.engine.models.prosody import analyze_prosody
from affectstream.engine.models.vad import SileroVad, StreamVad, sanitize_audio
from affectstream.engine.types import FaceResult, VideoFrame, VoiceResult, Window, WindowResult

log = logging.getLogger("affectstream.lite")

FrameKey = tuple[str, int, float, int]
TRANSCRIPT_MAX_AGE = 10  # windows: an older transcript is not attached
CLOCK_RESTART_S = 5.0  # an unseen frame this far behind a stream's newest one means its clock restarted
EARLY_MESH_EVERY_S = 1.0  # early frames: one face mesh per stream per this much stream time (≤ hop)


@dataclass(slots=True)
class FrameFeatures:
    """What the fast path keeps about one frame: its faces, their expression probabilities, track ids."""

    boxes: np.ndarray  # (k, 4) float x1 y1 x2 y2 pixels
    det_scores: np.ndarray  # (k,)
    probs: np.ndarray  # (k, 7)
    error: str | None = None  # why the frame was skipped (bad input), if it was
    actions: list[dict[str, float] | None] = field(default_factory=list)  # face-mesh cues per face
    dets: list[Any] = field(default_factory=list)  # the detections (box + keypoints), for a later mesh


def frame_key(stream_id: str, frame: VideoFrame) -> FrameKey:
    """Cache key: stream, index, timestamp and a cheap content fingerprint.

    `ts` as well as `index`: a source that never sets `index` (default 0) must not alias its frames.
    The fingerprint (shape + a sparse pixel sample, ~µs) keeps a stream whose clock restarts after a
    reconnect from being served the old faces of a frame with the same index and timestamp.
    """
    img = frame.image
    try:
        a = np.asarray(img)
        fp = hash((a.shape, a[:: max(1, a.shape[0] // 8), :: max(1, a.shape[1] // 8)].tobytes()))
    except (AttributeError, IndexError, TypeError, ValueError):
        fp = id(img)
    return (stream_id, int(frame.index), round(float(frame.ts), 6), fp)


def normalize_frame(image: Any) -> np.ndarray:
    """Any accepted frame (BGR, gray, BGRA, non-uint8) → contiguous H×W×3 uint8 BGR; ValueError otherwise."""
    import cv2

    if image is None:
        raise ValueError("frame has no image")
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"frame has unsupported shape {a.shape}")
    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        raise ValueError(f"frame has {a.shape[2]} channels (expected 1, 3 or 4)")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"frame has non-numeric dtype {a.dtype}")
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0, 255).astype(np.uint8)
    if a.ndim == 2 or a.shape[2] == 1:
        return cv2.cvtColor(a.reshape(a.shape[0], a.shape[1]), cv2.COLOR_GRAY2BGR)
    if a.shape[2] == 4:
        return cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(a)


def _det_fields(d: Any) -> tuple[np.ndarray, float]:
    box = np.asarray(getattr(d, "box", d), dtype=np.float32).reshape(-1)[:4]
    return box, float(getattr(d, "score", 1.0))


class _StreamTracks:
    """Gives each frame's detections track ids from its stream's IoU tracker, exactly once per frame.

    Ids are remembered per frame (bounded LRU), so overlapping windows — and the cache-off mode — see
    the same ids for the same frame instead of feeding the tracker a frame twice or out of order. A
    frame older than the last one tracked (its ids evicted) is matched against live tracks read-only.
    """

    def __init__(self, capacity: int = 4096, max_streams: int = 256) -> None:
        from affectstream.engine.models.tracker import TrackerBank

        self._bank = TrackerBank(max_streams=max_streams)
        self._last = LruCache(max_streams)
        self._ids = LruCache(capacity)

    def assign(self, key: FrameKey, boxes: np.ndarray) -> list[int]:
        known = self._ids.get(key)
        if known is not None and len(known) == len(boxes):
            return list(known)
        stream, _, ts, _ = key
        tracker = self._bank.get(stream)
        pos = (key[1], key[2])
        last = self._last.get(stream)
        if last is not None and pos <= last and last[1] - pos[1] > CLOCK_RESTART_S:
            # far behind the newest frame and never seen: the stream's clock restarted (reconnect)
            self._bank.drop(stream)
            tracker = self._bank.get(stream)
            last = None
        if last is not None and pos <= last:
            ids = _match_ids(tracker, boxes)
        else:
            ids = tracker.update(list(boxes), ts)
            self._last.put(stream, pos)
        self._ids.put(key, ids)
        return ids


def _match_ids(tracker: Any, boxes: np.ndarray) -> list[int]:
    """Read-only ids for an old frame: the live track with the best IoU, else -1 (unknown)."""
    from affectstream.engine.models.tracker import iou

    out = []
    for b in boxes:
        best, best_iou = -1, 0.0
        for tid, t in tracker.tracks.items():
            o = iou(t.box, b)
            if o > best_iou:
                best, best_iou = int(tid), o
        out.append(best)
    return out


class LiteAnalyzer(AnalyzerBase):
    """The `lite` profile's fast path (implements the `Analyzer` protocol).

    `threads` is ONNX Runtime's intra-op thread count per encoder. Default 1: on a small shared CPU one
    non-spinning thread beat two (bench/RESULTS.md, lite perception), since the engine already runs
    decode, analysis and the LLM in parallel. Raise it on idle many-core hosts.
    """

    profile = "lite"

    def __init__(
        self,
        profile: Any = "lite",
        *,
        detector: str = "short",
        max_faces: int = 4,
        min_face: int = 24,
        threads: int = 1,
        transcript: bool = False,
        transcript_nice: int = 0,
        transcript_idle: bool = False,
        runtime: str = "auto",
        cache_frames: int = 1024,
        verify: bool = True,
        warmup: bool = True,
        actions: bool = True,
        vad_model: str | Path | None = None,
        face_detector: Any = None,
        voice_model: bool = True,
        voice_head: str | Path | None = None,
        parallel_voice: bool = False,
    ) -> None:
        from affectstream.engine.profile import Profile
        from affectstream.engine.runtimes.select import load_runtime

        self.prof = profile if isinstance(profile, Profile) else Profile.load(profile, verify=False)
        if verify and not isinstance(profile, Profile):
            # only what this run uses: a damaged Whisper without --transcript, or a damaged LLM with
            # reasoning off, must not stop a run that never loads it
            self.prof.verify(self._components_in_use(runtime, detector, actions, bool(transcript)))
        self.threads = int(threads)
        self.runtime_pref = runtime
        self._lock = threading.Lock()  # analyze calls may come from several worker threads
        if runtime == "torch":  # the eager reference (benchmarks, debugging): the PyTorch ports
            self.expression = ExpressionModel(self._torch_expression())
        else:
            self.expression = ExpressionModel(
                load_runtime(self.prof.path("expression"), runtime, threads=self.threads)
            )
        # the sequence variant of Silero (one call per window, bit-exact) when the profile ships it;
        # `vad_model` overrides the file (benchmarks of the variants)
        vad_comp = "vad_sequence" if self.prof.has("vad_sequence") else "vad"
        vad_path = Path(vad_model) if vad_model is not None else self.prof.path(vad_comp)
        self.vad = SileroVad(load_runtime(vad_path, "cpu", threads=1))
        if face_detector is None:
            face_detector = self._build_detector(detector, max_faces, min_face)
        self.detector = face_detector
        self.mesh = self._build_mesh() if actions and self.prof.has("face_mesh") else None
        self._tracks = _StreamTracks()
        self.cache = LruCache(cache_frames)
        # overlapping windows share audio too: run Silero once per stream over time (off with the cache)
        self.stream_vad = StreamVad(self.vad) if cache_frames > 0 else None
        self.transcriber = None
        self._speech: dict[str, Any] = {}
        if transcript and self.prof.has("whisper"):
            from affectstream.engine.models.transcript import Transcriber

            self.transcriber = Transcriber(
                self.prof.path("whisper"), threads=1, nice=transcript_nice, idle=transcript_idle
            )
        # the trained speech-emotion head (when the profile ships it, or `voice_head` names a retrained one)
        self.voice_emotion: Any = None
        self.voice_emotion_error: str | None = None
        if voice_model:
            self.voice_emotion, self.voice_emotion_error = self._build_voice_emotion(voice_head)
        self.voice_windows = 0
        self._voice_ctx: dict[str, Any] = {}
        # optionally the voice part of a batch beside its face part (both spend their time in ONNX
        # Runtime and CTranslate2, which release the GIL); measured no gain on 2 cores, so off by default
        self._voice_pool = (
            ThreadPoolExecutor(1, thread_name_prefix="affectstream-voice") if parallel_voice else None
        )
        self.frames_bad = 0
        self.frames_processed = 0
        self.frames_early = 0  # analysed by prefetch(), before their window closed
        self._early_mesh_ts: dict[str, float] = {}
        self.faces_classified = 0
        self.windows = 0
        if warmup:
            self.warmup()

    def _components_in_use(self, runtime: str, detector: str, actions: bool, transcript: bool) -> list[str]:
        if runtime == "torch":
            want = ["expression_hdf5", f"face_{detector}_tflite", "vad", "vad_sequence"]
        else:
            want = ["expression", f"face_{detector}", "vad", "vad_sequence"]
            if actions:
                want.append("face_mesh")
        if transcript:
            want.append("whisper")
        return [c for c in want if self.prof.has(c)]

    def warmup(self) -> None:
        """Run every model once on dummy input (no caches or trackers touched): the first real window
        otherwise pays session initialisation and allocator warm-up, several times its normal latency."""
        rng = np.random.default_rng(0)
        self._detect([rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)] * 2)
        self.expression.predict(np.zeros((2, 64, 64), np.uint8))
        if self.mesh is not None:
            from affectstream.engine.models.face_detector import FaceDetection

            fake = FaceDetection(
                np.array([80, 60, 200, 180], np.float32),
                0.9,
                np.array([[110, 100], [170, 100]] + [[140, 130]] * 4, np.float32),
            )
            self._mesh_actions([np.zeros((240, 320, 3), np.uint8)], [[fake]])
        noise = rng.normal(0, 0.05, 16_000).astype(np.float32)
        self.vad.analyze(noise)
        analyze_prosody(noise, [(0.0, 1.0)])
        if self.voice_emotion is not None:
            self.voice_emotion.warmup()

    @classmethod
    def from_profile(
        cls, profile: Any, settings: Any = None, *, runtime: str = "auto", **kw: Any
    ) -> LiteAnalyzer:
        """Build from a profile (name, folder or `Profile`) and `engine.config.LiteSettings`
        (detector, max_faces, min_face, threads, transcript); `kw` overrides any of them."""
        opts: dict[str, Any] = {}
        if settings is not None:
            for k in (
                "detector",
                "max_faces",
                "min_face",
                "threads",
                "transcript",
                "transcript_nice",
                "transcript_idle",
                "actions",
                "voice_model",
                "voice_head",
                "parallel_voice",
            ):
                if hasattr(settings, k):
                    opts[k] = getattr(settings, k)
        opts.update(kw)
        return cls(profile, runtime=runtime, **opts)

    def _torch_expression(self) -> Any:
        from affectstream.engine.runtimes.torch_rt import TorchRuntime
        from affectstream.export.fer import load_hdf5

        return TorchRuntime(
            load_hdf5(self.prof.path("expression_hdf5")), ["input"], ["probs"], threads=self.threads
        )

    def _build_voice_emotion(self, head: str | Path | None) -> tuple[Any, str | None]:
        """The speech-emotion model, or (None, why): a profile prepared before the head shipped, or no
        faster-whisper, leaves the voice on prosody only — said once in the log and in `runtime_info`."""
        from affectstream.engine.models.voice_emotion import VoiceEmotionModel, WhisperEncoder, read_head_info
        from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable
        from affectstream.engine.runtimes.select import load_runtime

        try:
            if head is not None:  # a user-trained head (`affectstream train voice`): not in the manifest
                info = read_head_info(head)
                self.prof.verify(["whisper"])
                enc = WhisperEncoder(
                    self.prof.path("whisper"), threads=self.threads, compute_type=info.compute_type
                )
                return VoiceEmotionModel(enc, load_runtime(Path(head), "cpu", threads=1), info), None
            if not self.prof.has("voice_emotion"):
                why = "the profile has no voice_emotion head; run: affectstream models prepare lite"
                log.warning("speech emotion off: %s", why)
                return None, why
            return VoiceEmotionModel.from_profile(self.prof, threads=self.threads), None
        except ModelFileError:
            raise  # a damaged or missing file is an error the user must fix, not a silent downgrade
        except (RuntimeUnavailable, ImportError) as e:
            log.warning("speech emotion off: %s", e)
            return None, str(e)

    def _build_mesh(self) -> Any:
        """Face mesh for facial actions (explainable cues); optional, so a failure only disables cues."""
        from affectstream.engine.models.face_mesh import FaceMesh

        if self.runtime_pref == "torch":
            return None  # the torch reference path runs the encoders only, without the cue models
        try:
            return FaceMesh.from_profile(self.prof, prefer=self.runtime_pref, threads=self.threads)
        except Exception as e:
            log.warning("face mesh unavailable (%s): windows carry no facial actions", e)
            return None

    def _build_detector(self, which: str, max_faces: int, min_face: int) -> Any:
        from affectstream.engine.models.face_detector import FaceDetector

        if self.runtime_pref == "torch":
            from affectstream.engine.runtimes.torch_rt import TorchRuntime
            from affectstream.export.blazeface import load_blazeface

            net = load_blazeface(self.prof.path(f"face_{which}_tflite"))
            rt = TorchRuntime(net, ["input"], ["regressors", "classificators"], threads=self.threads)
            return FaceDetector(rt, model=which, max_faces=max_faces, min_face_px=min_face)
        return FaceDetector.from_profile(
            self.prof,
            model=which,
            prefer=self.runtime_pref,
            threads=self.threads,
            max_faces=max_faces,
            min_face_px=min_face,
        )

    # ---- the per-frame stage (detect + classify), cached -------------------------------------------

    def _frame_features(
        self,
        items: list[tuple[FrameKey, VideoFrame]],
        lat: dict[str, float],
        mesh_keys: set[FrameKey] | None = None,
    ) -> dict[FrameKey, FrameFeatures]:
        out: dict[FrameKey, FrameFeatures] = {}
        todo: list[tuple[FrameKey, np.ndarray]] = []
        for key, fr in items:
            if key in out:
                continue
            hit = self.cache.get(key)
            if hit is not None:
                out[key] = hit
                continue
            try:
                todo.append((key, normalize_frame(fr.image)))
            except ValueError as e:
                self.frames_bad += 1
                out[key] = FrameFeatures(
                    np.zeros((0, 4), np.float32),
                    np.zeros(0, np.float32),
                    np.zeros((0, 7), np.float32),
                    error=str(e),
                )
            # not cached: a bad frame is cheap to reject again
        if todo:
            self._detect_and_classify(todo, out, lat)
        else:
            lat["detect"] = lat.get("detect", 0.0)
            lat["expression"] = lat.get("expression", 0.0)
        if self.mesh is not None:
            self._add_actions(items, out, dict(todo), mesh_keys, lat)
        return out

    def _detect_and_classify(
        self,
        todo: list[tuple[FrameKey, np.ndarray]],
        out: dict[FrameKey, FrameFeatures],
        lat: dict[str, float],
    ) -> None:
        """New frames: one batched detector call, one batched expression call; results cached."""
        t0 = time.perf_counter()
        images = [img for _, img in todo]
        dets = self._detect(images)
        t1 = time.perf_counter()
        crops, owners = [], []
        per_frame: list[tuple[np.ndarray, np.ndarray]] = []
        for j, ((_key, img), fdets) in enumerate(zip(todo, dets, strict=True)):
            if fdets:
                parsed = [_det_fields(d) for d in fdets]
                boxes = np.stack([b for b, _ in parsed]).astype(np.float32)
                scores = np.array([s for _, s in parsed], np.float32)
                gray = to_gray(img)
                crops.append(self.expression.crops(gray, boxes))
                owners.extend([j] * len(boxes))
            else:
                boxes, scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
            per_frame.append((boxes, scores))
        probs = self.expression.predict(np.concatenate(crops)) if crops else np.zeros((0, 7), np.float32)
        t2 = time.perf_counter()
        owners_a = np.asarray(owners, int)
        for j, (key, _img) in enumerate(todo):
            boxes, scores = per_frame[j]
            ff = FrameFeatures(
                boxes,
                scores,
                probs[owners_a == j] if len(owners_a) else np.zeros((0, 7), np.float32),
                actions=[None] * len(dets[j]),
                dets=list(dets[j]) if self.mesh is not None else [],
            )
            out[key] = ff
            self.cache.put(key, ff)
        self.frames_processed += len(todo)
        self.faces_classified += len(probs)
        lat["detect"] = lat.get("detect", 0.0) + (t1 - t0) * 1000
        lat["expression"] = lat.get("expression", 0.0) + (t2 - t1) * 1000

    def _add_actions(
        self,
        items: list[tuple[FrameKey, VideoFrame]],
        out: dict[FrameKey, FrameFeatures],
        normalized: dict[FrameKey, np.ndarray],
        mesh_keys: set[FrameKey] | None,
        lat: dict[str, float],
    ) -> None:
        """Facial actions (one batched mesh call) for the frames in `mesh_keys` (all when None) that have
        faces but no actions yet — new frames, and frames analysed early without the mesh (their
        detections are kept in the cache for this)."""
        t0 = time.perf_counter()
        frames = dict(items)
        need = [
            k
            for k in frames
            if (mesh_keys is None or k in mesh_keys)
            and out[k].dets
            and all(a is None for a in out[k].actions)
        ]
        if need:
            imgs = [normalized[k] if k in normalized else normalize_frame(frames[k].image) for k in need]
            for k, acts in zip(need, self._mesh_actions(imgs, [out[k].dets for k in need]), strict=True):
                out[k].actions = acts
        lat["mesh"] = lat.get("mesh", 0.0) + (time.perf_counter() - t0) * 1000

    def _mesh_keys(self, windows: list[Window]) -> set[FrameKey]:
        """Frames that get the face mesh: facial actions are slow-changing cues, not scores, so at most one
        frame per window (its newest) — and none when the window already holds a cached frame with cues
        (the previous window's newest, at hop < length). Keeps the mesh, the costliest model per face,
        off most frames."""
        keys: set[FrameKey] = set()
        if self.mesh is None:
            return keys
        for w in windows:
            if not w.frames:
                continue
            cached = (self.cache.peek(frame_key(w.stream_id, f)) for f in w.frames)
            if any(ff is not None and any(a is not None for a in ff.actions) for ff in cached):
                continue
            keys.add(frame_key(w.stream_id, max(w.frames, key=lambda f: (f.ts, f.index))))
        return keys

    def _mesh_actions(
        self, images: list[np.ndarray], dets: list[list[Any]]
    ) -> list[list[dict[str, float] | None]]:
        """Facial actions per detected face (one batched mesh call), or None per face when disabled."""
        if self.mesh is None:
            return [[None] * len(d) for d in dets]
        try:
            res = self.mesh.run(images, dets)
        except Exception as e:  # cues are optional: never lose the window's expression for them
            log.warning("face mesh failed (%s); no facial actions for this batch", e)
            return [[None] * len(d) for d in dets]
        return [[r.actions if r is not None else None for r in row] for row in res]

    def _detect(self, images: list[np.ndarray]) -> list[list[Any]]:
        try:
            return self.detector.detect_batch(images)
        except Exception as e:  # one odd frame must not cost the whole batch its faces
            log.warning("batched face detection failed (%s); retrying frame by frame", e)
            res = []
            for img in images:
                try:
                    res.append(self.detector.detect_batch([img])[0])
                except Exception as e2:
                    self.frames_bad += 1
                    log.warning("face detection failed on a %s frame: %s", img.shape, e2)
                    res.append([])
            return res

    # ---- voice ----------------------------------------------------------------------------------------

    def _voice(self, windows: list[Window], lat: dict[str, float]) -> list[VoiceResult | None]:
        idx = [i for i, w in enumerate(windows) if w.audio is not None and np.asarray(w.audio).size > 0]
        out: list[VoiceResult | None] = [None] * len(windows)
        if not idx:
            return out
        t0 = time.perf_counter()
        clean = [sanitize_audio(windows[i].audio)[0] for i in idx]
        if self.stream_vad is not None:
            vads = [
                self.stream_vad.analyze(windows[i].stream_id, windows[i].start, a)
                for i, a in zip(idx, clean, strict=True)
            ]
        else:
            vads = self.vad.analyze_batch(clean)
        t1 = time.perf_counter()
        for i, a, v in zip(idx, clean, vads, strict=True):
            # prosody is recomputed per window: caching its pitch frames per stream saved little, because
            # the fixed per-window parts (energy, decimation, summary) dominate
            p = analyze_prosody(a, v.segments)
            transcript = None
            if self.transcriber is not None:
                transcript = self._transcript(windows[i], a, v.speech)
            out[i] = VoiceResult(
                speech=v.speech,
                speech_ratio=v.speech_ratio,
                pitch_hz=p.pitch_hz,
                pitch_std_hz=p.pitch_std_hz,
                energy_db=p.energy_db,
                speaking_rate=p.speaking_rate,
                pause_ratio=p.pause_ratio,
                arousal=p.arousal if v.speech else None,
                transcript=transcript,
            )
        t2 = time.perf_counter()
        lat["vad"] = (t1 - t0) * 1000
        lat["prosody"] = (t2 - t1) * 1000
        if self.voice_emotion is not None:
            items = [
                (self._voice_stream(windows[i].stream_id), windows[i].start, a, v.speech)
                for i, a, v in zip(idx, clean, vads, strict=True)
            ]
            probs = self.voice_emotion.predict_windows(items)
            for i, p in zip(idx, probs, strict=True):
                if p is not None:
                    out[i].scores = {k: float(x) for k, x in zip(EMOTIONS, p, strict=True)}  # type: ignore[union-attr]
                    self.voice_windows += 1
            lat["voice_emotion"] = (time.perf_counter() - t2) * 1000
        return out

    def _voice_stream(self, stream_id: str) -> Any:
        """The stream's voice context (`StreamContext`: its recent speech as encoder states, so each
        window encodes only the audio it adds); at most 256 streams are remembered."""
        ctx = self._voice_ctx.get(stream_id)
        if ctx is None:
            ctx = self._voice_ctx[stream_id] = self.voice_emotion.stream_context()  # type: ignore[union-attr]
            while len(self._voice_ctx) > 256:
                self._voice_ctx.pop(next(iter(self._voice_ctx)))
        return ctx

    def _transcript(self, w: Window, audio: np.ndarray, speech: bool) -> str | None:
        """Feed the stream's speech buffer, queue it (rate-limited) when there is speech, and return the
        latest finished transcript of this stream if it is recent (≤ TRANSCRIPT_MAX_AGE windows old)."""
        from affectstream.engine.models.transcript import SpeechBuffer

        buf = self._speech.get(w.stream_id)
        if buf is None:
            buf = self._speech[w.stream_id] = SpeechBuffer(10.0)
            while len(self._speech) > 256:
                self._speech.pop(next(iter(self._speech)))
        buf.add(w.start, audio)
        if speech:
            self.transcriber.submit(w.stream_id, w.index, buf.audio())  # type: ignore[union-attr]
        tr = self.transcriber.latest(w.stream_id)  # type: ignore[union-attr]
        if tr is None or w.index - tr.window_index > TRANSCRIPT_MAX_AGE:
            return None
        return tr.text

    # ---- early frames (live streams, before their window closes) -------------------------------------

    def prefetch(self, stream_id: str, frames: list[VideoFrame]) -> int:
        """Analyse frames that coming windows of `stream_id` will hold, before those windows close.

        Why: when many live streams close their windows at once, each window's face work (detection,
        expression, mesh) would otherwise be done in that burst. Done here, in idle time as frames are
        chosen, the window finds them in the frame cache and only its audio is left. Results are exactly
        the ones the window would compute (same cache, same models); track ids are still assigned when
        the window is analysed, in frame order. The face mesh runs on about one early frame per
        `EARLY_MESH_EVERY_S` of the stream, so every window already holds facial actions; a window that
        does not gets its newest frame meshed at close, as before. Returns how many frames were new.
        """
        if not frames:
            return 0
        with self._lock:
            items = [(frame_key(stream_id, f), f) for f in frames]
            mesh: set[FrameKey] = set()
            if self.mesh is not None:
                last = self._early_mesh_ts.get(stream_id, -np.inf)
                for key, f in items:
                    ts = float(f.ts)
                    if ts - last >= EARLY_MESH_EVERY_S or ts < last - CLOCK_RESTART_S:
                        mesh.add(key)
                        last = ts
                self._early_mesh_ts[stream_id] = last
                while len(self._early_mesh_ts) > 256:
                    self._early_mesh_ts.pop(next(iter(self._early_mesh_ts)))
            before = self.frames_processed
            self._frame_features(items, {}, mesh)
            new = self.frames_processed - before
            self.frames_early += new
            return new

    # ---- the Analyzer protocol ----------------------------------------------------------------------

    def analyze(self, window: Window) -> WindowResult:
        return self.analyze_batch([window])[0]

    def analyze_batch(self, windows: list[Window]) -> list[WindowResult]:
        """All frames of all windows share one detector call and one expression call; audio shares VAD."""
        if not windows:
            return []
        with self._lock:
            t_start = time.perf_counter()
            lat: dict[str, float] = {}
            items = [(frame_key(w.stream_id, f), f) for w in windows for f in w.frames]
            mesh_keys = self._mesh_keys(windows)
            has_audio = any(w.audio is not None and np.asarray(w.audio).size > 0 for w in windows)
            if self._voice_pool is not None and has_audio and items:
                vlat: dict[str, float] = {}
                pending = self._voice_pool.submit(self._voice, windows, vlat)
                try:
                    feats = self._frame_features(items, lat, mesh_keys)
                finally:
                    voices = pending.result()  # the voice part's errors surface here, as before
                lat.update(vlat)
            else:
                feats = self._frame_features(items, lat, mesh_keys)
                voices = self._voice(windows, lat)
            results = []
            t_f = time.perf_counter()
            for w, voice in zip(windows, voices, strict=True):
                results.append(self._result(w, feats, voice))
            lat["fusion"] = (time.perf_counter() - t_f) * 1000
            lat.setdefault("vad", 0.0)
            lat.setdefault("prosody", 0.0)
            total = (time.perf_counter() - t_start) * 1000
            now = time.monotonic()
            for w, r in zip(windows, results, strict=True):
                r.latency_ms = {**lat, "analyze": total, "fast_path": (now - w.closed_at) * 1000}
                if len(windows) > 1:
                    r.extra["batch"] = len(windows)
            self.windows += len(windows)
            return results

    def _result(
        self, w: Window, feats: dict[FrameKey, FrameFeatures], voice: VoiceResult | None
    ) -> WindowResult:
        per_track: dict[int, dict[str, list]] = {}
        for f in w.frames:
            key = frame_key(w.stream_id, f)
            ff = feats.get(key)
            if ff is None or len(ff.boxes) == 0:
                if ff is not None and ff.error is None:
                    self._tracks.assign(key, ff.boxes)  # empty frames age tracks too
                continue
            ids = self._tracks.assign(key, ff.boxes)
            for k, tid in enumerate(ids):
                d = per_track.setdefault(tid, {"p": [], "s": [], "box": None, "a": []})
                d["p"].append(ff.probs[k])
                d["s"].append(ff.det_scores[k])
                d["box"] = ff.boxes[k]
                if k < len(ff.actions) and ff.actions[k]:
                    d["a"].append(ff.actions[k])
        tracks = []
        for tid, d in per_track.items():
            b = d["box"]
            tracks.append(
                TrackEvidence(
                    track=int(tid),
                    probs=np.stack(d["p"]),
                    det_scores=np.asarray(d["s"], np.float32),
                    box=tuple(int(v) for v in np.rint(b[:4])),  # type: ignore[arg-type]
                    area=float((b[2] - b[0]) * (b[3] - b[1])),
                )
            )
        tracks.sort(key=lambda t: (-t.weight(), t.track))
        track_actions = {int(tid): _mean_actions(d["a"]) for tid, d in per_track.items()}
        v_ev = None
        if voice is not None:
            vp = None if voice.scores is None else np.array([voice.scores[k] for k in EMOTIONS])
            v_ev = VoiceEvidence(voice.speech_ratio, voice.arousal, vp)
        fused = fuse(tracks, v_ev, n_frames=len(w.frames))
        faces = []
        for t in tracks:
            p = t.mean_probs()
            i = int(np.argmax(p))
            faces.append(
                FaceResult(
                    track=t.track,
                    box=t.box,
                    label=EMOTIONS[i],
                    score=float(p[i]),
                    scores={k: float(v) for k, v in zip(EMOTIONS, p, strict=True)},
                    actions=track_actions.get(t.track),
                )
            )
        return WindowResult(
            stream=w.stream_id,
            window=w.ref,
            label=fused.label,
            score=fused.score,
            scores=fused.scores,
            faces=faces,
            voice=voice,
            modalities=fused.modalities,
            profile=self.profile,
        )

    # ---- introspection ------------------------------------------------------------------------------

    def runtime_info(self) -> dict[str, Any]:
        """What really executes each encoder (for `stats`), plus cache and frame counters."""
        info: dict[str, Any] = {
            "expression": self.expression.runtime.describe().to_dict(),
            "vad": self.vad.runtime.describe().to_dict(),
        }
        if self.mesh is not None:
            info["face_mesh"] = self.mesh.runtime.describe().to_dict()
        drt = getattr(self.detector, "runtime", None)
        if drt is not None and hasattr(drt, "describe"):
            info["face"] = drt.describe().to_dict()
        info["frame_cache"] = self.cache.stats()
        if self.stream_vad is not None:
            info["vad_stream"] = self.stream_vad.stats()

        info["frames"] = {
            "processed": self.frames_processed,
            "bad": self.frames_bad,
            "early": self.frames_early,
        }
        info["faces_classified"] = self.faces_classified
        if self.transcriber is not None:
            info["transcript"] = self.transcriber.stats()
        if self.voice_emotion is not None:
            info["voice_emotion"] = {
                **self.voice_emotion.runtime.describe().to_dict(),
                "windows": self.voice_windows,
                "seconds_encoded": round(self.voice_emotion.encoder.samples_encoded / 16_000, 1),
                "chunk_s": self.voice_emotion.info.chunk_s,
            }
        else:
            info["voice_emotion"] = {"off": self.voice_emotion_error or "disabled"}
        return info

    def close(self) -> None:
        if self.transcriber is not None:
            self.transcriber.close()
            self.transcriber = None
        if self._voice_pool is not None:
            self._voice_pool.shutdown(wait=True)
            self._voice_pool = None


def _mean_actions(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """Per-track facial actions: the mean of each cue over the frames where the mesh found the face."""
    if not rows:
        return None
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
