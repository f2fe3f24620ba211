"""Many identities in one call: one avatar folder per subject folder, for shell pipelines.

A failed subject does not stop the others; ``--skip-existing`` resumes (a subject counts as done
when its ``report.json`` exists, which ``create`` writes last); ``--shard I/N`` takes every N-th
subject from I so N machines or GPUs can split one list.
"""

from __future__ import annotations

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
        lines = path.read_text().splitlines()
    return [Path(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


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
    **create_options: Any,
) -> list[dict[str, Any]]:
    """``create`` for each subject folder of this shard into ``output_root/<folder name>/``.

    Returns one result per subject of the shard: ``{"name", "status": ok|failed|skipped, ...}``.
    """
    names = [f.name for f in folders]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Avat3rError(f"subject folders share a name, so their outputs would collide: {', '.join(duplicates)}")
    results = []
    for i, folder in enumerate(folders):
        if i % shard.count != shard.index:
            continue
        out = output_root / folder.name
        if skip_existing and (out / "report.json").is_file():
            result: dict[str, Any] = {"name": folder.name, "status": "skipped", "output": str(out)}
        else:
            try:
                report = run_create(photos_in(folder), out, **create_options)
                result = {
                    "name": folder.name, "status": "ok", "output": str(out), "gaussians": report["gaussians"],
                    "photos_used": len(report["photos"]["used"]), "seconds": report["seconds"],
                }
            except Avat3rError as error:  # one subject's bad input must not stop the others
                result = {"name": folder.name, "status": "failed", "error": str(error)}
            except OSError as error:
                result = {"name": folder.name, "status": "failed", "error": f"{error.filename or folder}: {error.strerror or error}"}
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
