"""The fix journal: an append-only JSON-lines log of every file change a job makes, written before the change.

Each record is an *intent*: the file about to be written (``target``), the sha256 of the input it is made
from (``source``), of what the target holds before (``before``, None when it does not exist yet) and of
what it will hold after (``after``), and the report row that will say it was done. The record reaches the
disk (fsync) before the file is touched; the report row is written after. So after a crash at any instant,
each intent whose row is missing is settled by looking at the files: the target holding ``after`` (and, for
a copy, the input still holding ``source``) means the change happened, and the row is written from the
journal; anything else means it did not, and the input is processed again. Nothing is applied twice. The
journal also tells which files roost wrote, so a copy it made may be rewritten but nobody else's file is
overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in chunks (OSError when it cannot be read)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_sha256(path: Path) -> str | None:
    """The sha256 of a regular file's bytes; None when it does not exist."""
    try:
        return read_sha256(path)
    except FileNotFoundError:
        return None


class JsonLines:
    """An append-only JSON-lines log: each record durable (flushed and fsynced) when ``append`` returns.

    The file is opened on the first append, after cutting a torn last line that a kill mid-append left,
    so that the new record starts a line of its own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def append(self, record: Record) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _drop_torn_tail(self.path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held across batches)
        self._file.write(json.dumps(record) + "\n")  # ASCII: any file name (surrogates escaped)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Journal:
    """An open fix journal (``path`` is created on the first intent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = list(read_journal(path))  # what earlier runs left; dropped once recovered
        self._written = {(r["target"], r["after"]) for r in self.records}
        self._log = JsonLines(path)

    def intent(self, record: Record) -> None:
        """Append one intent and make it durable before the caller changes any file."""
        self._log.append(record)
        self._written.add((record["target"], record["after"]))

    def wrote(self, target: str, sha: str | None) -> bool:
        """Whether roost itself wrote ``target`` with the content of this sha256."""
        return (target, sha) in self._written

    def close(self) -> None:
        self._log.close()


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line (a kill or power cut mid-append), so that the next record starts a line of its own."""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)
        os.fsync(f.fileno())


def read_journal(path: Path) -> Iterator[Record]:
    """The whole records of a journal (a torn last line, left by a kill, is skipped)."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n") and line.strip():
                yield json.loads(line)
