"""Progress display shared by the commands: live Rich bars on a terminal's stderr.

Off a terminal (a log file, CI, a pipeline) live bars would be noise, so frame counters are
silent there and ``stage_progress`` prints one plain line as each stage starts instead: a
minutes-long ``create`` in a log shows where it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


StageCallback = Callable[[str, int, int], None]


@contextmanager
def stage_progress(console: Console) -> Iterator[StageCallback]:
    """A ``progress(stage, done, total)`` callback: one bar per stage on a terminal, else one line per stage.

    The line is ``[  12.3 s] Preprocessing (4)``: seconds since the command started, the stage,
    and its step count when it has more than one step.
    """
    if console.is_terminal:
        with progress_bar(console) as bar:
            tasks: dict[str, TaskID] = {}

            def on_bar(stage: str, done: int, total: int) -> None:
                # One bar per stage, created when the stage starts, so the display reads as a checklist.
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            yield on_bar
        return
    start = time.perf_counter()
    seen: set[str] = set()

    def on_line(stage: str, done: int, total: int) -> None:
        if stage in seen:
            return
        seen.add(stage)
        steps = f" ({total})" if total > 1 else ""
        console.print(f"[{time.perf_counter() - start:6.1f} s] {stage}{steps}", markup=False, highlight=False)

    yield on_line
