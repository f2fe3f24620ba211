"""The one registry of known Avat3r weights: where they come from, their hashes and licence.

No Avat3r weights have been published (the authors' repository is an empty placeholder, see
``docs/paper.md``), so the registry starts empty. Entries are added only for files that
exist, with the sha256 of the exact bytes: the project's own trained models go here, either as a
hub repo pinned to a commit or as a folder shipped in the package (``path``, relative to the
bundled assets folder, ``io/bundled.py``). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avat3r_cli.io.bundled import assets_dir


@dataclass(frozen=True)
class WeightsEntry:
    """One set of known weights.

    Attributes:
        name: short name users type (``avat3r weights download NAME``).
        preset: the ``ModelConfig`` preset the weights were trained with (for listings).
        licence: SPDX id or a short licence name.
        geometry_backend: the position-map backend the weights expect (e.g. ``dust3r``).
        feature_backend: the image-feature backend they expect (``none``, ``sapiens-2b``, ...).
        description: one line for listings.
        repo: hub repo id ``org/name`` (exactly one of ``repo`` and ``path`` is set).
        revision: the hub commit the hashes belong to (pin it; a branch can move).
        path: a bundled folder, relative to the assets folder (``io/bundled.py``), or absolute.
        files: ``(filename, sha256 hex)`` pairs; downloads and ``weights verify`` check them.
    """

    name: str
    preset: str
    licence: str
    geometry_backend: str
    feature_backend: str
    description: str
    repo: str | None = None
    revision: str | None = None
    path: str | None = None
    files: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if (self.repo is None) == (self.path is None):
            raise ValueError(f"registry entry {self.name!r}: set exactly one of repo and path")

    @property
    def hashes(self) -> dict[str, str]:
        """filename -> expected sha256 (lower-case hex)."""
        return {name: sha.lower() for name, sha in self.files}

    @property
    def source(self) -> str:
        """Human-readable origin: ``hf://org/name@rev`` or the folder."""
        if self.repo is not None:
            return f"hf://{self.repo}" + (f"@{self.revision}" if self.revision else "")
        return str(self.folder)

    @property
    def folder(self) -> Path | None:
        """The bundled folder (absolute), or None for hub weights."""
        if self.path is None:
            return None
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else assets_dir() / path


# Add entries only with real files and their real sha256 (see the module docstring).
REGISTRY: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="avat3r-small",
        preset="small",
        licence="Apache-2.0",
        geometry_backend="template",
        feature_backend="none",
        description="the default: trained by this project on CPU on synthetic heads (card: avat3r-small/README.md in the assets)",
        path="avat3r-small",
        files=(
            ("config.json", "9d70aee30668dd8b8af89ddb3d73465d836f3c910f817cdf330165dd1ffcefbd"),
            ("model.safetensors", "5391698ec5eabc35be3f5cd34c6f68adfef34d39d757aa449f7c287bc2675ce8"),
        ),
    ),
)


def entries() -> tuple[WeightsEntry, ...]:
    """All registered weights (read at call time, so tests can substitute the registry)."""
    return REGISTRY


def find_entry(name: str) -> WeightsEntry | None:
    """The entry called ``name``, or None."""
    for entry in entries():
        if entry.name == name:
            return entry
    return None


def known_names() -> str:
    """Comma-separated registered names, or a note that there are none (for error messages)."""
    names = [e.name for e in entries()]
    return ", ".join(names) if names else "none are registered yet"
