"""``dedup_files`` on families of near-duplicates from real photos: precision, recall, keepers, actions."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from roost.dedup import Action, DedupOptions, Keep, dedup_files, undo
from roost.dedup.actions import moved_records
from roost.dedup.groups import REPORT_SCHEMA
from roost.errors import JobOptionError
from roost.jobs.base import RunOptions
from roost.jobs.report import read_rows
from tests.dedup.conftest import tree
from tests.dedup.families import pairwise

RUN = RunOptions(workers=1, batch_size=8)
Collection = tuple[Path, dict[str, str | None]]


@pytest.fixture(scope="module")
def grouped(collection: Collection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The report rows of a default run over the collection, by file name."""
    report = tmp_path_factory.mktemp("report") / "dups.csv"
    summary = dedup_files([collection[0]], report=report, run=RUN)
    assert summary.errors == 0 and summary.processed == len(collection[1])
    return {Path(r["path"]).name: r for r in read_rows(report, REPORT_SCHEMA)}


def test_families_are_grouped_with_high_precision_and_recall(grouped: dict[str, dict], collection: Collection) -> None:
    family = collection[1]
    precision, recall = pairwise({name: row["group"] for name, row in grouped.items()}, family)
    assert precision >= 0.99 and recall >= 0.95, (precision, recall)


def test_distinct_photos_are_never_grouped(grouped: dict[str, dict], collection: Collection) -> None:
    distinct = [name for name, f in collection[1].items() if f is None]
    assert len(distinct) == 8  # elephants.jpg is a downscaled copy of a large original
    assert all(grouped[name]["group"] is None and grouped[name]["keeper"] for name in distinct)
    groups_of = {}
    for name, row in grouped.items():
        if row["group"] is not None:
            groups_of.setdefault(row["group"], set()).add(collection[1][name])
    assert all(len(families) == 1 for families in groups_of.values())  # no group mixes two photos


def test_one_keeper_per_group_with_the_most_pixels(grouped: dict[str, dict]) -> None:
    groups: dict[int, list[dict]] = {}
    for row in grouped.values():
        if row["group"] is not None:
            groups.setdefault(row["group"], []).append(row)
    assert len(groups) == 6
    for members in groups.values():
        assert sum(1 for r in members if r["keeper"]) == 1
        assert all(0.0 <= r["similarity"] <= 1.0 and (r["keeper"] or r["match"]) for r in members)
    assert grouped["elephants_3840x2160.jpg"]["keeper"] and grouped["volna_5120x2880.jpg"]["keeper"]
    assert not grouped["elephants.jpg"]["keeper"] and grouped["elephants.jpg"]["match"] == "perceptual"


def test_match_says_how_each_member_matched(shared_dir: Path, tmp_path: Path) -> None:
    from tests.dedup.families import VARIANTS

    photo = shared_dir / "photos" / "ladybird.jpg"
    shutil.copyfile(photo, tmp_path / "a.jpg")
    shutil.copyfile(photo, tmp_path / "b_copy.jpg")
    for name in ("pixels", "half"):
        make, suffix, params = VARIANTS[name]
        from PIL import Image

        make(Image.open(photo).convert("RGB")).save(tmp_path / f"c_{name}.{suffix}", **params)
    for i, name in enumerate(sorted(os.listdir(tmp_path))):
        os.utime(tmp_path / name, (1_000_000 + i, 1_000_000 + i))  # a.jpg is the oldest
    summary = dedup_files([tmp_path], report=None, options=DedupOptions(keep=Keep.OLDEST), run=RUN)
    assert summary.counts == {"groups": 1, "duplicates": 3}
    rows = {}
    dedup_files([tmp_path], report=tmp_path.parent / "r.jsonl", options=DedupOptions(keep=Keep.OLDEST), run=RUN)
    for row in read_rows(tmp_path.parent / "r.jsonl", REPORT_SCHEMA):
        rows[Path(row["path"]).name] = row
    assert rows["a.jpg"]["keeper"] and rows["a.jpg"]["match"] is None
    assert (rows["b_copy.jpg"]["match"], rows["b_copy.jpg"]["similarity"]) == ("exact", 1.0)
    assert (rows["c_pixels.png"]["match"], rows["c_pixels.png"]["similarity"]) == ("pixels", 1.0)
    assert rows["c_half.jpg"]["match"] == "perceptual" and 0.84 <= rows["c_half.jpg"]["similarity"] <= 1.0


def test_move_then_undo_restores_every_byte(workspace: Path, tmp_path: Path) -> None:
    before = tree(workspace)
    to = tmp_path / "dups"
    dry = dedup_files([workspace], report=tmp_path / "r.csv", options=DedupOptions(action=Action.MOVE, to=to,
                      dry_run=True), run=RUN)  # fmt: skip
    assert tree(workspace) == before and not to.exists() and len(dry.planned) == dry.counts["duplicates"]
    moved = dedup_files([workspace], report=tmp_path / "r.csv", options=DedupOptions(action=Action.MOVE, to=to),
                        run=RUN)  # fmt: skip
    assert moved.counts["moved"] == len(dry.planned) > 0 and not moved.failures
    left = tree(workspace)
    assert len(left) == len(before) - len(dry.planned) and all(before[name] == data for name, data in left.items())
    assert {Path(r["src"]).name for r in moved_records(moved.manifest or "")} == {
        Path(p.source).name for p in dry.planned
    }
    again = dedup_files(
        [workspace], report=tmp_path / "r.csv", options=DedupOptions(action=Action.MOVE, to=to), run=RUN
    )
    assert again.counts["duplicates"] == 0 and tree(workspace) == left  # the keepers stay
    outcome = undo(to / "roost-dedup-manifest.jsonl")
    assert outcome.done == len(dry.planned) and not outcome.failures
    assert tree(workspace) == before
    assert [p.name for p in to.iterdir()] == ["roost-dedup-manifest.jsonl"]
    assert undo(to / "roost-dedup-manifest.jsonl").done == 0  # done once only


def test_undo_refuses_to_overwrite_a_new_file(workspace: Path, tmp_path: Path) -> None:
    to = tmp_path / "dups"
    summary = dedup_files([workspace], report=None, options=DedupOptions(action=Action.MOVE, to=to), run=RUN)
    victim = Path(summary.planned[0].source)
    victim.write_bytes(b"a new file with the same name")
    outcome = undo(to / "roost-dedup-manifest.jsonl")
    assert len(outcome.failures) == 1 and victim.read_bytes() == b"a new file with the same name"
    assert (to / victim.relative_to(workspace)).exists()  # the moved copy is kept


def test_link_writes_a_deduplicated_view(workspace: Path, tmp_path: Path) -> None:
    to = tmp_path / "unique"
    summary = dedup_files([workspace], report=None, options=DedupOptions(action=Action.LINK, to=to), run=RUN)
    links = sorted(to.iterdir())
    assert len(links) == summary.processed - summary.counts["duplicates"] == summary.counts["linked"]
    assert all(p.is_symlink() and Path(os.readlink(p)).parent == workspace for p in links)
    assert len(links) == 2 + 3  # a keeper per family, and the distinct photos
    again = dedup_files([workspace], report=None, options=DedupOptions(action=Action.LINK, to=to), run=RUN)
    assert again.counts["linked"] == 0 and not again.failures


def test_bad_files_are_rows_and_options_are_checked(workspace: Path, tmp_path: Path) -> None:
    (workspace / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    report = tmp_path / "r.parquet"
    summary = dedup_files([workspace], report=report, run=RUN)
    rows = {Path(r["path"]).name: r for r in read_rows(report, REPORT_SCHEMA)}
    assert summary.errors == 1 and "broken.png" in rows["broken.png"]["error"] and rows["broken.png"]["group"] is None
    for bad in ({"action": "delete"}, {"action": "move"}, {"keep": "largest"}, {"similarity": 1.5}):
        with pytest.raises(JobOptionError):
            DedupOptions(**bad)  # type: ignore[arg-type]


def test_a_move_across_file_systems_copies_checks_and_keeps_times(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = os.link

    def other_file_system(src: str, dst: str) -> None:
        if not str(src).endswith(".part"):  # the source and --to on different devices: no hard link
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        link(src, dst)

    monkeypatch.setattr(os, "link", other_file_system)
    before, times = tree(workspace), {p.name: p.stat().st_mtime_ns for p in workspace.iterdir()}
    to = tmp_path / "dups"
    moved = dedup_files([workspace], report=None, options=DedupOptions(action=Action.MOVE, to=to), run=RUN)
    assert moved.counts["moved"] == 22 and not moved.failures
    assert all(before[p.name] == p.read_bytes() and times[p.name] == p.stat().st_mtime_ns
               for p in to.iterdir() if p.suffix != ".jsonl")  # fmt: skip
    assert not list(to.glob("*.part")) and len(tree(workspace)) == len(before) - 22
    assert undo(to / "roost-dedup-manifest.jsonl").done == 22 and tree(workspace) == before


def test_names_that_are_not_utf8_move_and_come_back(shared_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = (shared_dir / "photos" / "kite.jpg").read_bytes()
    names = [os.fsdecode(b"caf\xe9.jpg"), "kite \n copy.jpg", "kite.jpg"]
    for name in names:
        (folder / name).write_bytes(photo)
    before = tree(folder)
    to = tmp_path / "dups"
    report = tmp_path / "r.csv"
    summary = dedup_files([folder], report=report, options=DedupOptions(action=Action.MOVE, to=to), run=RUN)
    assert summary.counts["moved"] == 2 and {Path(r["path"]).name for r in read_rows(report, REPORT_SCHEMA)} == set(
        names
    )
    assert undo(to / "roost-dedup-manifest.jsonl").done == 2 and tree(folder) == before
