"""Thumbnails for the review page: made in worker processes, WebP, cached by file content.

A thumbnail is named after the sha256 of the file's bytes and its size (``<hash>-<px>.webp``), so a photo
moved to another folder keeps its thumbnail and a photo changed by a fix gets a new one; a re-run does not
read again the files whose size and modification time are unchanged (``stat-cache.json``). EXIF orientation
is applied: the thumbnail shows the image as a viewer does, which is what the orientation model saw. The
"after" view of a fix is the same thumbnail turned by the page.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from roost.data.decode import load_image
from roost.errors import RoostError
from roost.files.atomic import atomic_write

DEFAULT_PX = 256
STAT_CACHE = "stat-cache.json"
WEBP_QUALITY = 80


@dataclass(frozen=True)
class Thumb:
    """The sha256 of one file (its thumbnail is ``<sha256>-<px>.webp``), or why there is no thumbnail."""

    sha256: str | None
    error: str | None = None


def thumb_name(sha: str, px: int) -> str:
    return f"{sha}-{px}.webp"


def make_thumb(path: str, folder: str, px: int) -> Thumb:
    """The thumbnail of ``path`` in ``folder`` (made unless already there), at most ``px`` on its longer side."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        target = Path(folder) / thumb_name(sha, px)
        if not target.exists():
            atomic_write(target, _webp(data, px))
        return Thumb(sha)
    except (RoostError, OSError, ValueError) as err:
        return Thumb(None, f"{type(err).__name__}: {err}")


def _webp(data: bytes, px: int) -> bytes:
    image = load_image(data, draft=(px, px))
    image.thumbnail((px, px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()


def make_thumbs(paths: Iterable[str], folder: Path, px: int = DEFAULT_PX, workers: int = 0) -> dict[str, Thumb]:
    """The thumbnails of ``paths`` in ``folder``, by path; ``workers`` processes (0: in this process).

    A file whose size and modification time are those of the last run, and whose thumbnail is there, is not
    even read again (``stat-cache.json`` in ``folder`` remembers its sha256).
    """
    if px < 16:
        raise ValueError(f"thumbnail size must be at least 16 pixels, got {px}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = list(dict.fromkeys(paths))
    cache = _read_cache(folder / STAT_CACHE)
    stats = {p: _stat(p) for p in paths}
    known = {p: Thumb(cache[p][2]) for p in paths if _cached(cache.get(p), stats[p], folder, px)}
    todo = [p for p in paths if p not in known]
    if workers == 0 or len(todo) < 8:
        made = {p: make_thumb(p, os.fspath(folder), px) for p in todo}
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(todo) // (workers * 8))
            done = pool.map(make_thumb, todo, [os.fspath(folder)] * len(todo), [px] * len(todo), chunksize=chunk)
            made = dict(zip(todo, done, strict=True))
    fresh = {p: [*stat, t.sha256] for p, t in made.items() if t.sha256 is not None and (stat := stats[p]) is not None}
    if fresh:
        atomic_write(folder / STAT_CACHE, json.dumps(cache | fresh, separators=(",", ":")).encode())
    return {p: known.get(p) or made[p] for p in paths}


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _cached(entry: list[Any] | None, stat: tuple[int, int] | None, folder: Path, px: int) -> bool:
    if entry is None or stat is None or tuple(entry[:2]) != stat:
        return False
    return (folder / thumb_name(entry[2], px)).is_file()


def _read_cache(path: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every file is read again
    return data if isinstance(data, dict) else {}
