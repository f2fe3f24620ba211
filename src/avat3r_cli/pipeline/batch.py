"""Many identities in one call: one avatar folder per subject folder, for shell pipelines.

A failed subject does not stop the others, whatever the failure (only Ctrl-C and exit stop a
batch): its error becomes that subject's result. Each subject's output folder is named after the
last component of its normalised absolute path, so ``photos/alice/..`` is ``photos`` and every
output stays inside the output root. ``--skip-existing`` resumes (a subject counts as done
when its ``report.json`` exists, which ``create`` writes last); ``--shard I/N`` takes every N-th
subject from I so N machines or GPUs can split one list.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.images import PHOTO_SUFFIXES
from avat3r_cli.pipeline.create import run_create


@dataclass(frozen=True)
class Shard:
    """Subject ``i`` belongs to this shard when ``i % count == index``."""

    index: int = 0
    count: int = 1

    @staticmethod
    def parse(text: str) -> Shard:
        """``"I/N"`` with 0 <= I < N; Avat3rError otherwise."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise Avat3rError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
        if not 0 <= index < count:
            raise Avat3rError(f"--shard I/N needs 0 <= I < N, got {text}")
        return Shard(index, count)


def read_subject_list(source: str) -> list[Path]:
    """Folders listed one per line in the file ``source`` (``-``: standard input); blanks and # skipped."""
    if source == "-":
        lines: Iterable[str] = sys.stdin.read().splitlines()
    else:
        path = Path(source)
        if not path.is_file():
            raise InputFileError(path, "subject list does not exist")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputFileError(path, "subject list is not a UTF-8 text file (one folder per line)") from None
    return [Path(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


def subject_name(folder: Path) -> str:
    """The output folder name of a subject: the last component of its normalised absolute path.

    Normalised lexically (``os.path.abspath``), not by resolving links, so a linked folder keeps
    the name it was given; ``a/b/..`` is ``a`` and ``.`` is the current folder's name.

    Raises:
        InputFileError: the path has no last component (the filesystem root).
    """
    name = Path(os.path.abspath(folder)).name
    if not name:
        raise InputFileError(folder, "cannot name a subject after this path; give its folder by name")
    return name


def _error_text(folder: Path, error: Exception) -> str:
    """One line describing why a subject failed."""
    if isinstance(error, Avat3rError):
        text = str(error)
    elif isinstance(error, OSError):
        text = f"{error.filename or folder}: {error.strerror or error}"
    else:  # a bug or an unforeseen fault: say what it was, the batch goes on
        text = f"{folder}: unexpected {type(error).__name__}: {error}"
    return " ".join(text.split("\n"))


def photos_in(folder: Path) -> list[Path]:
    """The photos of a subject folder (sorted by name); InputFileError when there are none."""
    if not folder.is_dir():
        raise InputFileError(folder, "subject folder does not exist")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise InputFileError(folder, f"no photos in the folder ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def run_batch(
    folders: list[Path],
    output_root: Path,
    shard: Shard = Shard(),
    skip_existing: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    **create_options: Any,
) -> list[dict[str, Any]]:
    """``create`` for each subject folder of this shard into ``output_root/<subject_name>/``.

    Args:
        on_result: called with each subject's result as soon as it is known.
        on_error: called with the exception behind each failed subject (e.g. to show its
            traceback when debugging).

    Returns one result per subject of the shard: ``{"name", "status": ok|failed|skipped, ...}``.
    Any exception of a subject (except KeyboardInterrupt and SystemExit, which stop the batch)
    makes it ``failed`` with an ``error`` line; the next subject still runs.
    """
    names: list[str | InputFileError] = []
    for folder in folders:
        try:
            names.append(subject_name(folder))
        except InputFileError as error:
            names.append(error)  # that subject's failure, reported in turn below
    given = [n for n in names if isinstance(n, str)]
    duplicates = sorted({n for n in given if given.count(n) > 1})
    if duplicates:
        raise Avat3rError(f"subject folders share a name, so their outputs would collide: {', '.join(duplicates)}")
    results = []
    for i, (folder, name) in enumerate(zip(folders, names)):
        if i % shard.count != shard.index:
            continue
        if isinstance(name, InputFileError):
            result: dict[str, Any] = {"name": str(folder), "status": "failed", "error": str(name)}
        elif skip_existing and (output_root / name / "report.json").is_file():
            result = {"name": name, "status": "skipped", "output": str(output_root / name)}
        else:
            try:
                report = run_create(photos_in(folder), output_root / name, **create_options)
                result = {
                    "name": name, "status": "ok", "output": str(output_root / name), "gaussians": report["gaussians"],
                    "photos_used": len(report["photos"]["used"]), "seconds": report["seconds"],
                }
            except Exception as error:  # one subject's failure, whatever it is, must not stop the others
                result = {"name": name, "status": "failed", "error": _error_text(folder, error)}
                if on_error is not None:
                    on_error(error)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
