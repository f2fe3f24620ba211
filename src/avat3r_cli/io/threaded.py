"""Run a consumer of a stream in a worker thread while this thread produces the items.

Videos are rendered (torch) and encoded (FFmpeg through PyAV, Pillow) frame by frame; both
release the GIL, so encoding frame t in a worker while frame t + 1 renders keeps both cores busy
instead of alternating. The producer stays in the calling (main) thread, where Ctrl-C and
signals arrive; a bounded queue keeps memory flat.

Errors cross in both directions: a consumer failure (disk full, a codec error) is raised in the
calling thread at its next hand-over; a producer failure or KeyboardInterrupt stops the consumer
(its iterator raises ``ProducerStopped``, so it can close its files) before the original
exception propagates.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

QUEUE_DEPTH = 4  # items in flight: enough to absorb jitter, little memory (4 frames)
_POLL_S = 0.1  # how often a blocked hand-over looks at the other side's state
_END, _STOP = object(), object()


class ProducerStopped(Exception):
    """Raised inside the consumer's iterator when the producer failed or was interrupted."""


def consume_in_thread(consume: Callable[[Iterator[T]], R], items: Iterable[T], depth: int = QUEUE_DEPTH) -> R:
    """``consume(iterator over items)`` run in a worker thread, ``items`` pulled in this thread.

    Returns what ``consume`` returns; re-raises its exception here. If iterating ``items``
    raises (KeyboardInterrupt included), the consumer is stopped and joined first.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    outcome: dict[str, object] = {}

    def stream() -> Iterator[T]:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if item is _STOP:
                raise ProducerStopped("the producer stopped")
            yield item  # type: ignore[misc]

    def work() -> None:
        try:
            outcome["result"] = consume(stream())
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="avat3r-consumer", daemon=True)
    worker.start()

    def put(item: object) -> None:
        # Never block for good: the consumer may have died with a full queue.
        while worker.is_alive():
            try:
                handoff.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def join() -> None:
        while worker.is_alive():  # short joins keep Ctrl-C responsive in this thread
            worker.join(_POLL_S)

    try:
        for item in items:
            put(item)
            if "error" in outcome:  # stop producing: the consumer is gone
                break
        put(_END)
        join()
    except BaseException:
        put(_STOP)
        join()
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]
