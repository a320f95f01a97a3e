"""Atomic file writes: a reader sees the old file or the new one, never a torn one, even after a crash.

Both helpers write into a hidden temporary beside the target (same directory, so same file system; for
:func:`atomic_target` a private folder holding a file of the target's name), fsync it, ``os.replace`` it
over the target and fsync the directory, so that the rename itself survives a power cut. Temporaries
are named ``.<name>.<8 hex>.roost-tmp`` (the name part cut so that the whole stays within 255 bytes)
and removed on any error, ``KeyboardInterrupt`` included; a process killed outright leaves one behind,
which :func:`remove_stale_temps` clears.

A new file gets the mode an ordinary ``open`` would give it (``0o666 & ~umask``): the temporary is
created with ``os.open(..., 0o666)`` and the kernel applies the umask, so the process umask is never
read or changed. Missing parent folders are created. A symlink at the target is replaced, not followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".roost-tmp"
_TEMP_NAME = re.compile(r"\..*\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX), re.DOTALL)
_NAME_BYTES = 200  # of the target's name kept in a temporary's: 1 + 200 + 1 + 8 + 10 <= 255
_ATTEMPTS = 100


def atomic_write(path: Path, data: bytes, *, mode_from: Path | None = None, keep_times: bool = False) -> None:
    """Replace ``path`` by a file holding ``data``, atomically and durably.

    ``mode_from`` is an existing file whose permission bits the result takes (often ``path`` itself);
    with ``keep_times`` its access and modification times too.
    """
    _check_times(mode_from, keep_times)
    tmp, fd = _create_temp(Path(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()  # before copying times: a later flush would set mtime again
            _finish(tmp, mode_from, keep_times)
            os.fsync(f.fileno())
        _publish(tmp, Path(path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_target(path: Path, *, mode_from: Path | None = None, keep_times: bool = False) -> Iterator[Path]:
    """Yield a temporary path for writers that need one (``torch.save``, ONNX exporters, ``save_file``).

    The path has ``path``'s own file name, inside a hidden private folder beside ``path``: torch names
    a checkpoint's zip archive after the file, and writers that add sibling files keep them there. The
    file already exists (empty, with the new-file mode); when the block ends without an exception it is
    fsynced and moved over ``path``. On any exception the folder is removed and the error re-raised.
    """
    path = Path(path)
    _check_times(mode_from, keep_times)
    folder = _create_temp_dir(path)
    try:
        tmp = folder / path.name
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        _finish(tmp, mode_from, keep_times)
        commit_file(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def commit_file(tmp: Path, path: Path) -> None:
    """Durably move a finished file on ``path``'s file system (e.g. a resumable download) over ``path``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _publish(Path(tmp), Path(path))


def remove_stale_temps(folder: Path, *, older_than_s: float = 3600) -> int:
    """Delete the temporaries these helpers left in ``folder`` (a crashed writer) untouched for
    ``older_than_s`` seconds; the number deleted. Other files, and younger temporaries, stay."""
    cutoff = time.time() - older_than_s
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if _TEMP_NAME.fullmatch(entry.name) and _last_touched(entry) < cutoff:
                removed += _remove(entry)
    return removed


def _temp_names(path: Path) -> Iterator[Path]:
    stem = os.fsdecode(os.fsencode(path.name)[:_NAME_BYTES])
    for _ in range(_ATTEMPTS):
        yield path.with_name(f".{stem}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _create_temp(path: Path) -> tuple[Path, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in _temp_names(path):
        with contextlib.suppress(FileExistsError):
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} attempts")


def _create_temp_dir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in _temp_names(path):
        with contextlib.suppress(FileExistsError):
            tmp.mkdir(mode=0o700)
            return tmp
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} attempts")


def _check_times(mode_from: Path | None, keep_times: bool) -> None:
    if keep_times and mode_from is None:
        raise ValueError("keep_times needs mode_from (the file whose times to keep)")


def _finish(tmp: Path, mode_from: Path | None, keep_times: bool) -> None:
    if mode_from is not None:
        (shutil.copystat if keep_times else shutil.copymode)(mode_from, tmp)


def _publish(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: directories cannot be opened
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems (FUSE, network) do not sync directories
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _last_touched(entry: os.DirEntry[str]) -> float:
    """The newest mtime of a temporary; for a folder, also of what the writer created inside it."""
    try:
        newest = entry.stat(follow_symlinks=False).st_mtime
        if entry.is_dir(follow_symlinks=False):
            with os.scandir(entry.path) as inner:
                newest = max([newest, *(e.stat(follow_symlinks=False).st_mtime for e in inner)])
    except FileNotFoundError:  # removed meanwhile (its writer finished, or another cleaner)
        return float("inf")
    return newest


def _remove(entry: os.DirEntry[str]) -> int:
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    except FileNotFoundError:
        return 0
    return 1
