"""Write outputs under a temporary name and rename them when complete.

A failure, Ctrl-C or SIGTERM leaves nothing under the requested name, only (at worst, after a
SIGKILL) a hidden ``.NAME.partial-*`` next to it that the next run ignores and the context
manager removes. The temporary sits in the destination's own folder, so the final rename never
crosses a file system. Errors raised while writing name the requested path, never the hidden
one, and finished outputs get the usual umask-respecting permissions (some writers create
0600 files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError

PARTIAL_MARK = ".partial-"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write to; on success rename it to ``path``.

    Works for files and for directories (the caller creates whichever it needs at the yielded
    path). On any exception, KeyboardInterrupt included, the temporary is removed and the
    exception propagates, renamed to name ``path`` where it named the temporary (or no file);
    an existing ``path`` is left untouched.

    Raises:
        Avat3rError: ``path`` is an existing folder that is a mount point (it cannot be replaced
            by a rename; write into a folder inside it).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and not final.is_symlink() and os.path.ismount(final):
        raise Avat3rError(f"{final}: is a mount point, which cannot be replaced; write into a folder inside it")
    tmp = final.with_name(f".{final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"{final}: nothing was written")
            normalise_permissions(tmp)
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as exc:
            renamed = renamed_error(exc, tmp, final)
            if renamed is exc:
                raise
            raise renamed from exc
    except BaseException:
        remove_path(tmp)
        raise


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree if it exists; never raises."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def renamed_error(exc: OSError, staged: Path, final: Path) -> OSError:
    """``exc`` naming ``final`` where it named ``staged`` (or a path inside it) or no file at all.

    A write that fails for lack of space or quota raises an OSError with no file name; the user
    needs to know which output it was, and the staged name is an internal detail.
    """
    if exc.errno is None:
        return exc
    old = exc.filename
    if old is None:
        new = str(final)
    else:
        new = _swap_prefix(str(old), staged, final)
        if new is None:
            return exc
    # OSError(errno, ...) builds the matching subclass (PermissionError, ...), so handlers still match.
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), new)


def _swap_prefix(name: str, staged: Path, final: Path) -> str | None:
    staged_text = str(staged)
    if name == staged_text:
        return str(final)
    if name.startswith(staged_text + os.sep):
        return str(final) + name[len(staged_text) :]
    return None


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def normalise_permissions(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the modes a plain ``open`` would.

    Files become ``0o666 & ~umask`` and folders ``0o777 & ~umask``: outputs are data, and a
    writer that makes private 0600 files (safetensors does) should not make them unreadable
    to the group that reads every other output.
    """
    mask = _umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_symlink():
        return
    if path.is_dir():
        os.chmod(path, dir_mode)
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), dir_mode)
            for name in files:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    os.chmod(full, file_mode)
    else:
        os.chmod(path, file_mode)


STAGING_PREFIX = ".partial-"


@contextmanager
def staged_folder(output: str | Path) -> Iterator[Path]:
    """A hidden staging folder inside ``output`` for outputs that are moved in one by one.

    Creating it is the writability check (run it before the work): a read-only or
    permission-denied ``output`` fails here, naming ``output``. Staging *inside* ``output``
    keeps every final rename on one file system, also when ``output`` is a mount point (a
    docker volume). On any exception (SIGTERM and Ctrl-C included) the staging folder is
    removed, and so are ``output`` and the parents this call created when they are still
    empty; errors that name a staged path are renamed to name the matching path in ``output``.
    The caller moves finished files into ``output`` (``os.replace``) before leaving.
    """
    output = Path(output)
    created = [p for p in (output, *output.parents) if not p.exists()]
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output))
    except OSError as exc:
        _remove_empty(created)
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(output)) from exc
    try:
        try:
            yield staging
        except OSError as exc:
            renamed = renamed_error(exc, staging, output) if exc.filename is not None else exc
            if renamed is exc:
                raise
            raise renamed from exc
        except Avat3rError as exc:
            if str(staging) not in str(exc):
                raise
            raise Avat3rError(str(exc).replace(str(staging), str(output))) from exc
    except BaseException:
        remove_path(staging)
        _remove_empty(created)
        raise
    remove_path(staging)


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders in ``created`` (deepest first) that are still empty; never raises."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return
