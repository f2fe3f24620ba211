"""Write outputs under a temporary name and rename them when complete.

A failure or Ctrl-C leaves nothing under the requested name, only (at worst) a hidden
``.NAME.partial-*`` next to it that the next run ignores and the context manager removes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write to; on success rename it to ``path``.

    Works for files and for directories (the caller creates whichever it needs at the yielded
    path). On any exception, KeyboardInterrupt included, the temporary is removed and the
    exception propagates; an existing ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
