"""Errors the CLI reports as one line (exit code 1) instead of a traceback."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
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


# What parsers raise on hostile or damaged content (as opposed to a missing file or a full disk,
# which stay OSErrors): csv.Error for over-long fields, OverflowError for huge numbers,
# RecursionError for deep nesting, MemoryError for sizes a forged header claims, and the
# ValueError / TypeError / KeyError / IndexError of structures that are not what they should be.
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, MemoryError,
    EOFError, SyntaxError, csv.Error,
)


@contextmanager
def input_file_errors(path: str | Path, what: str) -> Iterator[None]:
    """Inside the block, any parse failure of the file ``path`` becomes one InputFileError.

    The readers check what they can and say so precisely; this is the net below them, so that no
    content, however crafted, reaches the user as a traceback. ``what`` names the kind of file
    (``"expression file"``). The original exception stays chained for ``AVAT3R_DEBUG``.
    """
    try:
        yield
    except Avat3rError:
        raise
    except RecursionError as error:
        raise InputFileError(path, f"unreadable {what} (nested too deeply)") from error
    except MemoryError as error:
        raise InputFileError(path, f"{what} is too large to load (out of memory)") from error
    except PARSE_ERRORS as error:
        detail = str(error).splitlines()[0][:160] if str(error) else ""
        raise InputFileError(path, f"unreadable {what} ({type(error).__name__}{': ' + detail if detail else ''})") from error
