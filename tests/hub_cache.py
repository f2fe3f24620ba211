"""A hand-made, offline Hugging Face hub cache for tests: nothing reaches the network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache under ``tmp_path``, set in the environment and in huggingface_hub's
    already-imported constants (it reads them at import), in offline mode."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def add_hub_files(cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT) -> Path:
    """Lay ``files`` (name in the repo -> source file) out as the hub cache does: blobs by sha256,
    snapshot symlinks, refs/main. Returns the snapshot folder."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        data = Path(source).read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (root / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob)
    return snapshot


def add_hub_repo(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT) -> Path:
    """Every file of ``folder`` as one hub repo (see ``add_hub_files``)."""
    return add_hub_files(cache, repo_id, {p.name: p for p in Path(folder).iterdir()}, commit)
