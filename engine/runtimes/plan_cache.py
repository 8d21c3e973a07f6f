"""Where built TensorRT plans live, and the rule that decides whether one may be loaded.

A serialized TensorRT plan is tied to the GPU (or Jetson SoC) it was built on, its compute capability,
the TensorRT version, the precision, the optimisation-profile shapes and, of course, the ONNX graph it
came from. Loading one built under different conditions either fails deep inside TensorRT or — worse —
runs with wrong tactics. So every plan is stored next to a JSON sidecar holding its full `PlanKey`,
and the cache hands out a plan only when the sidecar equals the key computed *now* and the plan's
bytes still hash to what the sidecar recorded. Anything else is stale or foreign: it is reported with a
reason and rebuilt, never loaded.

This module has no TensorRT or CUDA dependency, so all of its rules are tested on CPU-only machines.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from affectstream.engine.hashing import sha256_bytes, sha256_file

log = logging.getLogger("affectstream.runtime")

SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")

Shape = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What makes a plan non-portable: the exact device and the TensorRT that built it."""

    name: str  # e.g. "NVIDIA H100 80GB HBM3" or "Orin (NVIDIA Jetson AGX Orin Developer Kit)"
    compute_capability: str  # "9.0", "8.7", ...
    tensorrt_version: str  # "10.3.0"


@dataclass(frozen=True, slots=True)
class ShapeRange:
    """One input's optimisation-profile shapes: TensorRT tunes for `opt` and accepts min..max."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"shape ranks differ: min {self.min}, opt {self.opt}, max {self.max}")
        for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True):
            if not (0 < lo <= mid <= hi):
                raise ValueError(f"need 0 < min <= opt <= max per dim, got {self.min}/{self.opt}/{self.max}")

    def as_lists(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


ShapeProfile = Mapping[str, ShapeRange]


def _profile_to_json(profile: ShapeProfile) -> dict[str, dict[str, list[int]]]:
    return {name: profile[name].as_lists() for name in sorted(profile)}


@dataclass(frozen=True, slots=True)
class PlanKey:
    """Everything a plan depends on. Two keys equal ⇔ the plan may be reused."""

    component: str  # profile component name, e.g. "face_short"
    onnx_sha256: str
    device: DeviceIdentity
    precision: str
    shapes: tuple[tuple[str, Shape, Shape, Shape], ...]  # sorted (input, min, opt, max)
    calibration_sha256: str = ""  # INT8 only: id of the calibration data the scales came from

    @classmethod
    def create(
        cls,
        component: str,
        onnx_path: Path,
        device: DeviceIdentity,
        precision: str,
        profile: ShapeProfile,
        calibration_id: str = "",
    ) -> PlanKey:
        """Key for building `onnx_path`; `calibration_id` identifies the INT8 calibration data
        (source media hash + sampling + preprocessing), known before calibration runs."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        shapes = tuple(
            (name, tuple(profile[name].min), tuple(profile[name].opt), tuple(profile[name].max))
            for name in sorted(profile)
        )
        calib = calibration_id if precision == "int8" else ""
        return cls(component, sha256_file(Path(onnx_path)), device, precision, shapes, calib)

    def to_json(self) -> dict[str, object]:
        return {
            "component": self.component,
            "onnx_sha256": self.onnx_sha256,
            "device": asdict(self.device),
            "precision": self.precision,
            "shapes": [[n, list(a), list(b), list(c)] for n, a, b, c in self.shapes],
            "calibration_sha256": self.calibration_sha256,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> PlanKey:
        dev = d["device"]
        assert isinstance(dev, Mapping)
        shapes_raw = d["shapes"]
        assert isinstance(shapes_raw, list)
        return cls(
            component=str(d["component"]),
            onnx_sha256=str(d["onnx_sha256"]),
            device=DeviceIdentity(
                str(dev["name"]), str(dev["compute_capability"]), str(dev["tensorrt_version"])
            ),
            precision=str(d["precision"]),
            shapes=tuple((str(n), tuple(a), tuple(b), tuple(c)) for n, a, b, c in shapes_raw),
            calibration_sha256=str(d.get("calibration_sha256", "")),
        )

    def digest(self) -> str:
        """Short stable id used as the file name, so different keys never overwrite each other."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return sha256_bytes(blob)[:16]

    def differences(self, other: PlanKey, *, build_inputs: bool = True) -> list[str]:
        """Human-readable reasons why `other` (found on disk) cannot stand in for `self` (wanted).

        `build_inputs=False` ignores the shape profile and calibration cache: at load time any plan
        for this exact graph, device, TensorRT and precision is valid (shapes only bound the batch,
        which the runtime chunks), whereas the builder wants an exact match to skip a rebuild.
        """
        out: list[str] = []
        if self.component != other.component:
            out.append(f"component {other.component!r} != {self.component!r}")
        if self.onnx_sha256 != other.onnx_sha256:
            out.append("ONNX file changed since the plan was built")
        if self.device.name != other.device.name:
            out.append(f"built on {other.device.name!r}, this device is {self.device.name!r}")
        if self.device.compute_capability != other.device.compute_capability:
            out.append(
                f"compute capability {other.device.compute_capability} != {self.device.compute_capability}"
            )
        if self.device.tensorrt_version != other.device.tensorrt_version:
            out.append(
                f"TensorRT {other.device.tensorrt_version} != installed {self.device.tensorrt_version}"
            )
        if self.precision != other.precision:
            out.append(f"precision {other.precision} != {self.precision}")
        if build_inputs and self.shapes != other.shapes:
            out.append("optimisation-profile shapes differ")
        if build_inputs and self.calibration_sha256 != other.calibration_sha256:
            out.append("INT8 calibration cache differs")
        return out


@dataclass(slots=True)
class CacheEntry:
    key: PlanKey
    plan_path: Path
    plan_sha256: str
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Lookup:
    """Result of asking the cache for a plan: a path to load, or the reasons there is none."""

    path: Path | None
    reasons: list[str]

    @property
    def hit(self) -> bool:
        return self.path is not None


class PlanCache:
    """A folder of `<component>/<digest>.engine` + `<digest>.json`. Keep it in a volume in containers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, key: PlanKey) -> tuple[Path, Path]:
        d = self.root / key.component
        stem = f"{key.precision}-{key.digest()}"
        return d / f"{stem}.engine", d / f"{stem}.json"

    def entries(self, component: str | None = None) -> list[CacheEntry]:
        """Every readable sidecar under the root (optionally one component's). Broken ones are skipped."""
        base = self.root / component if component else self.root
        out: list[CacheEntry] = []
        if not base.exists():
            return out
        for js in sorted(base.rglob("*.json")):
            entry = self._read_sidecar(js)
            if entry is not None:
                out.append(entry)
        return out

    @staticmethod
    def _read_sidecar(js: Path) -> CacheEntry | None:
        try:
            d = json.loads(js.read_text())
            if d.get("sidecar_version") != SIDECAR_VERSION:
                return None
            return CacheEntry(
                key=PlanKey.from_json(d["key"]),
                plan_path=js.with_suffix(".engine"),
                plan_sha256=str(d["engine_sha256"]),
                extra=dict(d.get("extra", {})),
            )
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return None

    def lookup(self, key: PlanKey) -> Lookup:
        """Return the plan for `key` only if its sidecar matches exactly and its bytes are intact."""
        plan, sidecar = self._paths(key)
        if not sidecar.exists() or not plan.exists():
            reasons = [f"no plan built for {key.component} ({key.precision}) on {key.device.name}"]
            for other in self.entries(key.component):
                diffs = key.differences(other.key)
                if diffs:
                    reasons.append(f"ignored {other.plan_path.name}: " + "; ".join(diffs))
            return Lookup(None, reasons)
        entry = self._read_sidecar(sidecar)
        if entry is None:
            return Lookup(None, [f"{sidecar.name}: unreadable sidecar, plan will be rebuilt"])
        diffs = key.differences(entry.key)
        if diffs:  # same file name but different content: a hand-placed or forged sidecar
            return Lookup(None, [f"{plan.name}: " + "; ".join(diffs)])
        actual = sha256_file(plan)
        if actual != entry.plan_sha256:
            return Lookup(None, [f"{plan.name}: plan bytes changed since build (hash mismatch)"])
        return Lookup(plan, [])

    def find_loadable(
        self, component: str, onnx_path: Path, device: DeviceIdentity, precisions: tuple[str, ...]
    ) -> Lookup:
        """At load time: the newest intact plan for this graph/device/TensorRT, best precision first.

        Shapes are not known at load time (the builder chose them), so they are not compared; every
        other field must match exactly and the plan bytes must hash to the sidecar's record.
        """
        onnx_sha = sha256_file(Path(onnx_path))
        reasons: list[str] = []
        for precision in precisions:
            want = PlanKey(component, onnx_sha, device, precision, ())
            found = []
            for entry in self.entries(component):
                if entry.key.precision != precision:
                    continue
                diffs = want.differences(entry.key, build_inputs=False)
                if diffs:
                    reasons.append(f"ignored {entry.plan_path.name}: " + "; ".join(diffs))
                elif not entry.plan_path.exists():
                    reasons.append(f"{entry.plan_path.name}: plan file missing")
                elif sha256_file(entry.plan_path) != entry.plan_sha256:
                    reasons.append(f"{entry.plan_path.name}: plan bytes changed since build")
                elif _accuracy_failed(entry.extra):
                    reasons.append(f"{entry.plan_path.name}: failed its accuracy check after the build")
                else:
                    found.append(entry)
            if found:
                best = max(found, key=lambda e: e.plan_path.stat().st_mtime)
                return Lookup(best.plan_path, reasons)
        reasons.insert(
            0,
            f"no valid plan for {component} ({'/'.join(precisions)}) on {device.name} "
            f"with TensorRT {device.tensorrt_version} in {self.root}",
        )
        return Lookup(None, reasons)

    def store(self, key: PlanKey, plan_bytes: bytes, extra: Mapping[str, object] | None = None) -> Path:
        """Write plan then sidecar atomically (a crash mid-write never leaves a loadable half-plan)."""
        plan, sidecar = self._paths(key)
        plan.parent.mkdir(parents=True, exist_ok=True)
        tmp = plan.with_suffix(".engine.tmp")
        tmp.write_bytes(plan_bytes)
        os.replace(tmp, plan)
        meta = {
            "sidecar_version": SIDECAR_VERSION,
            "key": key.to_json(),
            "engine_sha256": sha256_bytes(plan_bytes),
            "extra": dict(extra or {}),
        }
        tmp_js = sidecar.with_suffix(".json.tmp")
        tmp_js.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp_js, sidecar)
        return plan

    def prune(self, key: PlanKey) -> list[str]:
        """Delete this component's plans that do not match `key` (stale/foreign). Returns reasons.

        Plans for *other precisions* are kept: an fp16 and an int8 plan legitimately coexist.
        Plans built for another device are also removed: a shared volume moved between GPUs must not
        accumulate unusable files.
        """
        removed: list[str] = []
        base = self.root / key.component
        if not base.exists():
            return removed
        for js in sorted(base.glob("*.json")):
            entry = self._read_sidecar(js)
            eng = js.with_suffix(".engine")
            if entry is None:
                reasons = ["unreadable sidecar"]
            else:
                if entry.key.precision != key.precision:
                    continue
                reasons = key.differences(entry.key)
                if not reasons:
                    continue
            for p in (js, eng):
                p.unlink(missing_ok=True)
            msg = f"removed {eng.name}: " + "; ".join(reasons)
            log.info("plan cache: %s", msg)
            removed.append(msg)
        return removed


def default_cache_root() -> Path:
    """`$AFFECTSTREAM_HOME/engines` — the compose file mounts a volume there so builds survive restarts."""
    from affectstream.engine.paths import home

    return Path(os.environ.get("AFFECTSTREAM_ENGINE_DIR", home() / "engines"))


def jetson_model() -> str | None:
    """The Jetson board name from the device tree (None elsewhere): part of the SoC identity."""
    p = Path("/proc/device-tree/model")
    try:
        return p.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None


def detect_device(device_index: int = 0) -> DeviceIdentity:
    """Identify the current GPU and TensorRT. Raises RuntimeUnavailable with the reason if impossible."""
    from affectstream.engine.runtimes.base import RuntimeUnavailable

    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:
        raise RuntimeUnavailable(f"tensorrt: Python package not installed ({e})") from e
    except OSError as e:  # the package is there but libnvinfer is not loadable
        raise RuntimeUnavailable(f"tensorrt: libraries failed to load ({e})") from e
    from affectstream.engine.runtimes.cuda_mem import cuda_device_info

    name, (major, minor) = cuda_device_info(device_index)
    board = jetson_model()
    if board:
        name = f"{name} ({board})"
    return DeviceIdentity(name=name, compute_capability=f"{major}.{minor}", tensorrt_version=trt.__version__)


def _accuracy_failed(extra: Mapping[str, object]) -> bool:
    """A plan whose post-build comparison against ONNX Runtime failed is never preferred at load."""
    acc = extra.get("accuracy")
    return isinstance(acc, Mapping) and acc.get("passed") is False
