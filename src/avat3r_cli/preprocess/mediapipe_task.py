"""What every MediaPipe Tasks wrapper here shares: created on first use, closed explicitly, quiet.

``FaceAnalyzer`` (``face.py``) and ``PersonSegmenter`` (``person_mask.py``) subclass
``MediaPipeTask`` and say only how their task is built (``_create``).
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from avat3r_cli.core.errors import Avat3rError


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration.

    MediaPipe's C++ side writes GLOG/TFLite banners straight to fd 2 while a task is created
    (GLOG_minloglevel alone does not stop them), which would garble a CLI's output.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediaPipeTask(ABC):
    """A MediaPipe Tasks object (``self._task``) as a context manager; ``self._mp`` is the module."""

    #: what the task is for, in the error when mediapipe cannot be imported
    purpose = "MediaPipe"

    def __init__(self) -> None:
        self._task: Any = None
        self._mp: Any = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def _create(self, base_options: Any, vision: Any) -> Any:
        """Build the task from MediaPipe's ``BaseOptions`` class and ``vision`` module."""

    def open(self) -> None:
        """Create the task (once)."""
        if self._task is not None:
            return
        os.environ.setdefault("GLOG_minloglevel", "2")  # read when MediaPipe's C++ side starts
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise Avat3rError(f"{self.purpose} needs the mediapipe package ({error})") from None
        with quiet_stderr():
            self._task = self._create(BaseOptions, vision)
        self._mp = mp

    def close(self) -> None:
        """Release the task; explicit, because MediaPipe's ``__del__`` misbehaves at exit."""
        if self._task is not None:
            self._task.close()
            self._task = None
