"""Checking model files against the registry's sha256: what every load and ``weights verify`` runs.

A folder shipped with the package is checked by its registered hashes whether it is named by
its registry name or by its path, so a flipped byte in the default model is caught either way.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.bundled import restore_hint
from avat3r_cli.io.registry import WeightsEntry, entries


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, hashes: dict[str, str], name: str) -> None:
    """Raise Avat3rError when a file is missing or its sha256 differs from ``hashes``.

    The message ends with a command that fixes it: for a folder shipped with the package, how
    to restore the file; for hub weights, which cached file to delete before downloading again.
    """
    bundled = bundled_entry(folder) is not None
    for filename, expected in hashes.items():
        path = folder / filename
        if not path.is_file():
            fix = restore_hint(path) if bundled else f"run: avat3r weights download {name}"
            raise Avat3rError(f"weights '{name}': {filename} is missing from {folder}; {fix}")
        got = sha256_cached(path)
        if got != expected:
            # A hub snapshot file is a link to a blob: the blob is what must go for a new download.
            fix = restore_hint(path) if bundled else f"delete {path.resolve()} and run: avat3r weights download {name}"
            raise Avat3rError(
                f"weights '{name}': {filename} has sha256 {got[:16]}..., expected {expected[:16]}... "
                f"(corrupt or changed); {fix}"
            )


def sha256_cached(path: Path) -> str:
    """``sha256_file(path)``, remembered for this process while the file's size and mtime stay the same."""
    stat = path.stat()
    return _sha256_of_state(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of_state(path: Path, size: int, mtime_ns: int) -> str:
    # Creating then animating verifies the same GB-sized file twice in one process; a file
    # rewritten in between has another size or mtime and is hashed again.
    return sha256_file(path)


def bundled_entry(folder: Path) -> WeightsEntry | None:
    """The registry entry whose shipped folder is ``folder`` (same file-system path), or None."""
    for entry in entries():
        if entry.folder is not None and entry.folder.is_dir() and entry.folder.resolve() == folder.resolve():
            return entry
    return None
