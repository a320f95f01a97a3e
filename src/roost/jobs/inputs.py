"""What a batch job runs over: the inputs expanded, normalised and de-duplicated, one item per file.

* An input's **key** (the report's ``path``) is its absolute, normalised path (``photos/../photos/a.jpg``,
  ``./photos/a.jpg`` and ``/home/me/photos/a.jpg`` are one key), so a resume finds its rows however the
  folder was named. Symbolic links are not resolved in the key.
* Inputs are **de-duplicated by the file they resolve to**: the same file named twice (or through a link)
  is processed once; the later names get a row saying which name was processed.
* Folders are expanded to their image files (sorted; ``recursive`` descends, without following links to
  folders). A file named explicitly is taken whatever its suffix.
* Nothing is dropped silently: a broken symbolic link, a FIFO, socket or device becomes an item with a
  ``problem`` (an error row), and is never opened (a FIFO would block).
* ``exclude`` paths (the report, the output folder of copies) are never inputs, nor anything under them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.data.datasets import is_image_file


@dataclass(frozen=True)
class Item:
    """One input file: its report key, the folder it was found in (None when named directly), any problem."""

    key: str
    root: str | None = None
    problem: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.key)

    def relative(self) -> Path:
        """The path below the input folder it was found in; the bare name for files named directly."""
        if self.root is None:
            return Path(os.path.basename(self.key))
        return Path(os.path.relpath(self.key, self.root))


def normalise(path: str | os.PathLike[str]) -> str:
    """The key of a path: absolute and normalised, links kept."""
    return os.path.abspath(os.fspath(path))


def expand(
    inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = False, exclude: Sequence[str | os.PathLike[str]] = ()
) -> list[Item]:
    """The items of ``inputs`` in order (see the module docstring). A missing input raises FileNotFoundError."""
    excluded = [normalise(p) for p in exclude]
    items: dict[str, Item] = {}
    for item in _walk(inputs, recursive):
        if item.key not in items and not _under(item.key, excluded):
            items[item.key] = item
    first: dict[str, str] = {}  # resolved file -> the name processed: its own name if given, else the first
    for item in items.values():
        if item.problem is None:
            real = os.path.realpath(item.key)
            if real not in first or item.key == real:
                first[real] = item.key
    return [_duplicate(item, first) for item in items.values()]


def _duplicate(item: Item, first: dict[str, str]) -> Item:
    if item.problem is not None:
        return item
    chosen = first[os.path.realpath(item.key)]
    return item if chosen == item.key else Item(item.key, item.root, f"same file as {chosen} (processed once)")


def _walk(inputs: Iterable[str | os.PathLike[str]], recursive: bool) -> Iterator[Item]:
    for given in inputs:
        key = normalise(given)
        if os.path.isdir(key):
            yield from _folder(key, recursive)
        elif os.path.lexists(key):
            yield Item(key, None, _problem(key))
        else:
            raise FileNotFoundError(f"no such file or folder: {os.fspath(given)}")


def _folder(root: str, recursive: bool) -> Iterator[Item]:
    """Image files under ``root`` in sorted order; a folder that cannot be listed becomes an item too."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            yield Item(folder, root, f"cannot list this folder: {err.strerror}")
            continue
        subfolders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            elif is_image_file(entry.path):
                yield Item(entry.path, root, _problem(entry.path))
        if recursive:
            stack.extend(reversed(subfolders))


def _problem(key: str) -> str | None:
    """Why ``key`` cannot be read as an image file, or None for a regular file (through links)."""
    try:
        mode = os.stat(key).st_mode
    except FileNotFoundError:
        return f"broken symbolic link (to {os.readlink(key)})" if os.path.islink(key) else "file vanished"
    except OSError as err:
        return f"cannot stat: {err.strerror}"
    if stat.S_ISREG(mode):
        return None
    kind = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device"}
    return f"not a regular file ({kind.get(stat.S_IFMT(mode), 'a special file')}); not read"


def _under(key: str, excluded: Sequence[str]) -> bool:
    return any(key == e or key.startswith(e.rstrip(os.sep) + os.sep) for e in excluded)
