"""Errors the CLI reports as one line (exit code 1) instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class Avat3rError(Exception):
    """A failure the user can act on: bad input, missing weights, an unusable file.

    The CLI's error boundary prints ``str(error)`` as one line and exits with code 1.
    """


class InputFileError(Avat3rError):
    """An input file is missing, unreadable or malformed; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
