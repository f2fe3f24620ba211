"""Frames of a video computed by a few worker threads, handed back in order.

On a CPU, one frame of the project's rasteriser is a chain of mid-sized tensor operations with
Python in between; two frames rendered at once, each by one torch thread, kept this project's
2-core machine busier than one frame on two intra-op threads (a 60-frame turntable at 256²:
3.3-3.9 s against 4.6-5.5 s). So on a CPU with T torch threads, T workers each run with one
intra-op thread (restored afterwards); on CUDA and MPS frames run one at a time in this thread.

Jobs with equal keys are computed once (within a window of recent jobs): the expression tour
eases out through the codes it eased in by and holds its peaks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

J = TypeVar("J")
R = TypeVar("R")

RECENT_KEYS = 8  # results kept for reuse by key; the tour repeats codes at most 6 frames apart
_POLL_S = 0.1


@contextmanager
def _one_thread_per_worker(workers: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _wait(future: Future) -> object:
    # Short waits keep Ctrl-C and signals responsive in the calling thread.
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except TimeoutError:
            continue


def workers_for(device: torch.device) -> int:
    """Worker threads ``map_frames`` uses on ``device``: torch's thread count on a CPU, else 1."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def in_flight(device: torch.device) -> int:
    """At most this many jobs run or wait ahead of the one being handed back."""
    workers = workers_for(device)
    return 2 * workers if workers > 1 else 0


def map_frames(
    compute: Callable[[J], R],
    jobs: Sequence[J],
    device: torch.device,
    key: Callable[[J], Hashable] | None = None,
) -> Iterator[R]:
    """``compute(job)`` for every job, yielded in job order.

    Args:
        compute: makes one frame (or any per-frame result); runs in worker threads on a CPU, so it
            must not touch shared state beyond reading (it runs under ``torch.no_grad``).
        jobs: the per-frame inputs.
        device: where the tensors live; only a CPU gets worker threads.
        key: jobs with equal keys among the last ``RECENT_KEYS`` share one result (None: no reuse).
    """
    workers, ahead = workers_for(device), in_flight(device)  # before the thread count changes

    def run(job: J) -> R:
        with torch.no_grad():
            return compute(job)

    if workers <= 1:
        recent: OrderedDict[Hashable, R] = OrderedDict()
        for job in jobs:
            k = key(job) if key is not None else None
            if k is not None and k in recent:
                recent.move_to_end(k)
                yield recent[k]
                continue
            result = run(job)
            if k is not None:
                recent[k] = result
                if len(recent) > RECENT_KEYS:
                    recent.popitem(last=False)
            yield result
        return

    with _one_thread_per_worker(workers), ThreadPoolExecutor(workers, thread_name_prefix="avat3r-frame") as pool:
        pending: deque[Future] = deque()
        by_key: OrderedDict[Hashable, Future] = OrderedDict()
        upcoming = iter(jobs)

        def submit_next() -> bool:
            job = next(upcoming, None)
            if job is None:
                return False
            k = key(job) if key is not None else None
            future = by_key.get(k) if k is not None else None
            if future is None:
                future = pool.submit(run, job)
                if k is not None:
                    by_key[k] = future
                    if len(by_key) > RECENT_KEYS:
                        by_key.popitem(last=False)
            else:
                by_key.move_to_end(k)
            pending.append(future)
            return True

        try:
            for _ in range(ahead):
                if not submit_next():
                    break
            while pending:
                result = _wait(pending.popleft())
                submit_next()
                yield result  # type: ignore[misc]
        finally:
            for future in pending:
                future.cancel()
