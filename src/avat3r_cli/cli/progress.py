"""Progress display shared by the commands: Rich on stderr, silent when stderr is not a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress


def progress_bar(console: Console) -> Progress:
    """A frame counter with ETA on ``console`` (off when it is not a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        # Transient: the summary line replaces the bar. Disabled off a terminal so logs and
        # captured stderr hold only the summary (or the one error line).
        transient=True,
        disable=not console.is_terminal,
    )
