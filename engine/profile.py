"""A prepared model profile on disk, verified before anything runs from it.

`Profile.load("lite")` (or a folder path) reads `manifest.json` and re-hashes every file it lists, so a
truncated download, a damaged SD card or a swapped model is reported by name — with the command that
fixes it — at start-up rather than showing up as silently wrong emotions later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from affectstream.engine.hashing import cached_sha256
from affectstream.engine.manifest import MANIFEST_NAME, Component, Manifest
from affectstream.engine.paths import profile_dir
from affectstream.engine.runtimes.base import ModelFileError


def fix_command(name: str, root: Path | None = None) -> str:
    """The command that (re)builds this profile; names the folder when it is not the default one."""
    cmd = f"affectstream models prepare {name}"
    if root is not None and Path(root).expanduser().resolve() != profile_dir(name).expanduser().resolve():
        cmd += f" --dest {root}"
    return cmd


@dataclass(slots=True)
class Profile:
    name: str
    root: Path
    manifest: Manifest

    @classmethod
    def load(cls, name_or_dir: str | Path, *, verify: bool = True) -> Profile:
        """Open a profile by name (under `AFFECTSTREAM_HOME/profiles`) or by folder, verifying hashes.

        Raises ModelFileError naming the missing or damaged file and the command that repairs it.
        """
        root, name = _resolve(name_or_dir)
        fix = fix_command(name, root)
        if not (root / MANIFEST_NAME).is_file():
            raise ModelFileError(
                f"profile '{name}' is not prepared ({root / MANIFEST_NAME} missing); run: {fix}"
            )
        try:
            manifest = Manifest.read(root)
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{e}; run: {fix}") from e
        prof = cls(name=manifest.profile or name, root=root, manifest=manifest)
        if verify:
            prof.verify()
        return prof

    def verify(self, components: list[str] | None = None) -> None:
        """Re-hash the files of `components` (all by default) against the manifest."""
        fix = fix_command(self.name, self.root)
        for cname in components or sorted(self.manifest.components):
            comp = self._component(cname)
            for rel, want in comp.hashes().items():
                path = self.root / rel
                if not path.is_file():
                    raise ModelFileError(f"model file {path} (component '{cname}') is missing; run: {fix}")
                if cached_sha256(path) != want:
                    raise ModelFileError(
                        f"model file {path} (component '{cname}') is damaged: SHA-256 mismatch; run: {fix}"
                    )

    def _component(self, name: str) -> Component:
        comp = self.manifest.components.get(name)
        if comp is None:
            have = ", ".join(sorted(self.manifest.components)) or "none"
            raise ModelFileError(
                f"profile '{self.name}' has no component '{name}' (has: {have}); "
                f"run: {fix_command(self.name, self.root)}"
            )
        return comp

    def has(self, component: str) -> bool:
        return component in self.manifest.components

    def path(self, component: str) -> Path:
        """Absolute path of a component's file (or folder, e.g. `whisper`)."""
        return self.root / self._component(component).file

    def component(self, name: str) -> Component:
        """Manifest entry (precision, input shapes, labels, origin, licence) of a component."""
        return self._component(name)

    @property
    def components(self) -> list[str]:
        return sorted(self.manifest.components)


def _resolve(name_or_dir: str | Path) -> tuple[Path, str]:
    p = Path(name_or_dir).expanduser()
    if isinstance(name_or_dir, Path) or p.is_dir() or "/" in str(name_or_dir):
        return p, p.name
    return profile_dir(str(name_or_dir)), str(name_or_dir)
