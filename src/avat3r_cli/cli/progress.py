"""Progress display shared by the commands: Rich on stderr, silent when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


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


def counter(bar: Progress, description: str) -> Callable[[int, int | None], None]:
    """A ``progress(done, total)`` callback for ``bar`` that adds its task on the first call.

    Created lazily, so the seconds spent loading files or models before the first step show no
    empty bar.
    """
    task: list[TaskID] = []

    def update(done: int, total: int | None) -> None:
        if not task:
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total)

    return update
