"""Third-party weights the preprocessing uses: where they come from, their licence, whether they are here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.bundled import asset_path, restore_hint
from avat3r_cli.io.mediapipe_assets import FACE_LANDMARKER_FILE
from avat3r_cli.preprocess.dust3r.load import DUST3R_REPO
from avat3r_cli.preprocess.sapiens import SAPIENS_PINS, SAPIENS_VARIANTS


@dataclass(frozen=True)
class Asset:
    """One third-party model file.

    Attributes:
        name: what ``avat3r weights download NAME`` takes.
        role: what it is used for (the option that selects it).
        repo: hub repo, or None for a file shipped in the package's assets (``io/bundled.py``).
        filename: the file (in the repo, or relative to the assets folder).
        licence: SPDX id.
        size: download size, for people deciding whether to fetch it.
        revision: the pinned hub commit, None where the downloader takes the repo's head.
    """

    name: str
    role: str
    repo: str | None
    filename: str
    licence: str
    size: str
    revision: str | None = None

    @property
    def source(self) -> str:
        if self.repo:
            return f"hf:{self.repo}" + (f"@{self.revision[:12]}" if self.revision else "")
        return f"{asset_path(self.filename)} (bundled)"

    def status(self) -> str:
        """``bundled``, ``missing``, ``cached`` or ``not downloaded``; never touches the network."""
        if self.repo is None:
            return "bundled" if asset_path(self.filename).is_file() else "missing"
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repo, self.filename, revision=self.revision)
        return "cached" if isinstance(found, str) else "not downloaded"


ASSETS: tuple[Asset, ...] = (
    Asset("face-landmarker", "face landmarks, blendshapes, head pose (MediaPipe)", None, FACE_LANDMARKER_FILE,
          "Apache-2.0", "3.8 MB"),
    Asset("dust3r", "--geometry dust3r", DUST3R_REPO, "model.safetensors", "CC-BY-NC-SA-4.0", "2.3 GB"),
    *(
        Asset(name, f"--features {name}", repo, filename, "CC-BY-NC-4.0", size, SAPIENS_PINS[name].revision)
        for (name, (repo, filename, _)), size in zip(SAPIENS_VARIANTS.items(), ("~1.2 GB", "2.7 GB", "4.7 GB", "8.7 GB"))
    ),
)


def find_asset(name: str) -> Asset | None:
    """The asset called ``name`` (``sapiens`` means ``sapiens-2b``), or None."""
    name = "sapiens-2b" if name == "sapiens" else name
    return next((a for a in ASSETS if a.name == name), None)


def download_asset(asset: Asset) -> Path:
    """Fetch ``asset`` into the hub cache (verified where the downloader verifies); its local path."""
    if asset.repo is None:
        path = asset_path(asset.filename)
        if not path.is_file():
            raise Avat3rError(f"{path}: missing; it ships with the package ({restore_hint(path)})")
        return path
    if asset.name == "dust3r":
        from avat3r_cli.preprocess.dust3r import download_dust3r

        return Path(download_dust3r())
    from avat3r_cli.preprocess.sapiens import download_sapiens

    return Path(download_sapiens(asset.name))
