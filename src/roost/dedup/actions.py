"""What ``roost dedup`` does with a grouping: move duplicates aside (undoably) or link the kept images.

Nothing is ever deleted or overwritten.

* **move** puts each non-keeper under the ``--to`` folder at its path relative to its input folder. Every
  move is journaled in the manifest (``<to>/roost-dedup-manifest.jsonl``, JSON lines) before it starts
  (``move``: source, destination, size, BLAKE2b) and after it ends (``moved``). Within a file system the
  file is hard-linked at the destination (which fails rather than replace anything) and then unlinked from
  the source; across file systems it is copied to a temporary, fsynced, checked against its digest,
  linked into place and only then removed from the source. A kill at any moment leaves the file at the
  source, at the destination, or (for an instant) at both with the same bytes; the next run settles each
  unfinished record from what it finds, so nothing is lost and nothing is moved twice. A file whose bytes
  changed since it was fingerprinted is not moved.
* **undo** (:func:`undo`) reads a manifest and moves every moved file back the same way (``restore`` /
  ``restored`` records appended to the manifest), refusing where something else now stands at the source.
* **link** writes, in ``--to``, a symbolic link to every kept image (keepers and images without
  duplicates) at its relative path: a de-duplicated view of the collection. Existing entries are left alone.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from roost.dedup.signatures import blake2b_file
from roost.errors import FixError
from roost.files.atomic import atomic_target
from roost.jobs.journal import JsonLines, read_journal

MANIFEST_NAME = "roost-dedup-manifest.jsonl"


class Action(StrEnum):
    REPORT = "report"
    MOVE = "move"
    LINK = "link"


@dataclass(frozen=True)
class Planned:
    """One file operation: ``source`` moved to (or linked from) ``target``."""

    source: str
    target: str
    size: int = 0
    digest: str = ""


@dataclass
class Outcome:
    """What an action did: counts, and one line per file it refused or failed on."""

    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def manifest_path(to: Path) -> Path:
    return Path(to) / MANIFEST_NAME


class Manifest(JsonLines):
    """The append-only log of moves and restores: each record fsynced before the step it announces."""

    def records(self) -> list[dict]:
        return list(read_journal(self.path))  # a torn last line (a kill mid-append) is skipped


def move_files(plan: Sequence[Planned], to: Path) -> Outcome:
    """Move each planned file (settling what an earlier, killed run left unfinished first)."""
    manifest = Manifest(manifest_path(to))
    outcome = Outcome()
    try:
        state = _last_ops(manifest.records(), ("move", "moved", "restore", "restored"))
        for record in state.values():
            if record["op"] == "move":
                _settle(manifest, Planned(record["src"], record["dst"], record["size"], record["blake2b"]), outcome)
        for item in plan:
            last = state.get(item.source, {}).get("op", "restored")
            if last != "restored":
                outcome.skipped += 1
                if last == "restore":
                    outcome.failures.append(f"{item.source}: an undo of its move is unfinished; run --undo again")
                continue
            manifest.append({"op": "move", "src": item.source, "dst": item.target, "size": item.size,
                             "blake2b": item.digest})  # fmt: skip
            _settle(manifest, item, outcome)
    finally:
        manifest.close()
    return outcome


def undo(manifest: str | os.PathLike[str]) -> Outcome:
    """Move every file a manifest moved back where it was; safe to run again after a kill."""
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"no such manifest: {path}")
    log = Manifest(path)
    outcome = Outcome()
    try:
        records = log.records()
        moved = {r["src"]: r for r in records if r["op"] == "moved"}
        restores = _last_ops(records, ("restore", "restored"))
        for src, record in moved.items():
            if restores.get(src, {}).get("op") == "restored":
                outcome.skipped += 1
                continue
            back = Planned(record["dst"], record["src"], record["size"], record["blake2b"])
            if src not in restores:
                log.append({"op": "restore", "src": src, "dst": record["dst"]})
            _transfer(
                back, outcome, functools.partial(log.append, {"op": "restored", "src": src, "dst": record["dst"]})
            )
        _prune_empty(path.parent)
    finally:
        log.close()
    return outcome


def _last_ops(records: Sequence[dict], ops: tuple[str, ...]) -> dict[str, dict]:
    """The last record of each source among records of these ``ops``."""
    last: dict[str, dict] = {}
    for record in records:
        if record["op"] in ops:
            last[record["src"]] = record
    return last


def _settle(manifest: Manifest, item: Planned, outcome: Outcome) -> None:
    record = {"op": "moved", "src": item.source, "dst": item.target, "size": item.size, "blake2b": item.digest}
    _transfer(item, outcome, functools.partial(manifest.append, record))


def _transfer(item: Planned, outcome: Outcome, done: Callable[[], None]) -> None:
    """Bring ``item.source`` to ``item.target`` without ever having neither, then call ``done``."""
    src, dst = Path(item.source), Path(item.target)
    try:
        _place(src, dst, item.digest)
    except (OSError, FixError) as err:
        outcome.failures.append(f"{src}: {err}")
        return
    done()
    outcome.done += 1


def _place(src: Path, dst: Path, digest: str) -> None:
    src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
    if dst_there and blake2b_file(dst) != digest:
        raise FixError(f"{dst} already exists with other content; left as it is")
    if not src_there:
        if not dst_there:
            raise FixError("the file is at neither place; nothing to do")
        return  # moved by the killed run
    if blake2b_file(src) != digest:
        raise FixError("the file changed since it was fingerprinted; not moved")
    if not dst_there:
        _copy_or_link(src, dst)
    src.unlink()


def _copy_or_link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # fails if anything is at dst
        return
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):  # no hard link here: copy
            raise
    with atomic_target(dst.with_name(dst.name + ".part"), mode_from=src, keep_times=True) as tmp:
        shutil.copyfile(src, tmp)
    part = dst.with_name(dst.name + ".part")
    if blake2b_file(part) != blake2b_file(src):
        part.unlink()
        raise FixError("the copy does not match the source; not moved")
    os.link(part, dst)
    part.unlink()


def _prune_empty(root: Path) -> None:
    """Remove folders left empty under ``root`` by an undo (the root and the manifest stay)."""
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        if Path(folder) != root and not os.listdir(folder):
            os.rmdir(folder)


def link_files(plan: Sequence[Planned]) -> Outcome:
    """Symbolic links at each ``target`` to its ``source``; an existing entry is kept (counted as skipped)."""
    outcome = Outcome()
    for item in plan:
        target = Path(item.target)
        if os.path.islink(target) and os.readlink(target) == item.source:
            outcome.skipped += 1
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(item.source, target)
            outcome.done += 1
        except FileExistsError:
            outcome.failures.append(f"{target}: something else is there; left as it is")
        except OSError as err:
            outcome.failures.append(f"{target}: {err.strerror or err}")
    return outcome


def describe(action: Action, plan: Sequence[Planned]) -> Iterator[str]:
    """What ``action`` would do, one line per file (``--dry-run``)."""
    verb = "move" if action is Action.MOVE else "link"
    for item in plan:
        yield (
            f"would {verb} {item.source} -> {item.target}"
            if verb == "move"
            else f"would link {item.target} -> {item.source}"
        )


def moved_records(path: str | os.PathLike[str]) -> list[dict]:
    """The ``moved`` records of a manifest: what an undo would restore."""
    return [r for r in read_journal(Path(path)) if r["op"] == "moved"]
