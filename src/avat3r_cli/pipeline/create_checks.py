"""Checks on ``create``'s paths that need no torch, MediaPipe or model: they run first.

``avat3r create nonexistent.jpg`` or an unwritable ``-o`` should fail in well under a second,
not after the tens of seconds that loading torch, MediaPipe and the weights take.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError, InputFileError


def check_photo_paths(photos: Iterable[str | Path]) -> list[Path]:
    """The photos as paths; InputFileError for one that does not exist or is a folder.

    A missing path is a typo or a shell glob that matched nothing, never a photo to skip.
    """
    paths = [Path(p) for p in photos]
    if not paths:
        raise Avat3rError("no photos given")
    for path in paths:
        if not path.exists():
            raise InputFileError(path, "file does not exist")
        if path.is_dir():
            raise InputFileError(path, "is a folder, expected a photo (subject folders need --per-folder)")
    return paths


def check_output_folder(output: str | Path, names: Iterable[str] = ()) -> None:
    """Raise Avat3rError unless ``output`` can become a folder holding the files ``names``.

    Checks that ``output`` is not a file, that its nearest existing ancestor is a writable
    folder, and that none of ``names`` is a folder inside it. Creating the staging folder
    (``io.atomic.staged_folder``) is the final word; this catches the common cases first.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise Avat3rError(f"{output}: exists and is not a folder")
    for folder in (output, *output.parents):
        if folder.exists():
            if not folder.is_dir():
                raise Avat3rError(f"{output}: cannot write there, {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                why = "read-only file system" if _read_only(folder) else "permission denied"
                where = "" if folder == output else f" in {folder}"
                raise Avat3rError(f"{output}: cannot write there{where} ({why})")
            break
    for name in names:
        if (output / name).is_dir():
            raise Avat3rError(f"{output / name}: is a folder; cannot write the {name} file there")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
