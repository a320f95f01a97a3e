"""``roost review`` without a browser: the rows a page gets and their order, the thumbnails (parallel,
cached by content, EXIF applied), the data file, and a folder that is never someone else's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roost.errors import ReviewError
from roost.jobs.embed import embed_schema
from roost.jobs.report import open_report
from roost.review import thumbs as thumbs_module
from roost.review.page import ReviewOptions, review_report
from roost.review.projection import pca, project
from roost.review.thumbs import Thumb, make_thumb, make_thumbs, thumb_name
from tests.review.helpers import PE, PHOTOS, orient_rows, page_data, rotated_photos, sha, write_orient

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared fixtures not present")


@pytest.fixture
def photos(tmp_path: Path) -> dict[Path, int]:
    return rotated_photos(tmp_path / "photos", 4)


def test_thumbnails_cached_by_content(tmp_path: Path, photos: dict[Path, int], monkeypatch) -> None:
    folder = tmp_path / "thumbs"
    first = make_thumbs(map(str, photos), folder, 64)
    files = {p: folder / thumb_name(t.sha256 or "", 64) for p, t in first.items()}
    assert all(t.sha256 == sha(Path(p)) for p, t in first.items())
    stamps = {f: f.stat().st_mtime_ns for f in files.values()}
    for f in files.values():
        assert max(Image.open(f).size) == 64 and Image.open(f).format == "WEBP"

    def no_decoding(data: bytes, px: int) -> bytes:
        raise AssertionError("a cached thumbnail was made again")

    read: list[str] = []

    def reading(path: str, folder: str, px: int) -> Thumb:
        read.append(path)
        return make_thumb(path, folder, px)

    monkeypatch.setattr(thumbs_module, "_webp", no_decoding)
    monkeypatch.setattr(thumbs_module, "make_thumb", reading)
    moved = tmp_path / "elsewhere.jpg"
    shutil.copy(next(iter(photos)), moved)  # the same content under another name
    again = make_thumbs([*map(str, photos), str(moved)], folder, 64)
    assert read == [str(moved)]  # unchanged files are not even read again
    assert {p: t for p, t in again.items() if p != str(moved)} == first
    assert again[str(moved)] == first[str(next(iter(photos)))]
    assert {f: f.stat().st_mtime_ns for f in files.values()} == stamps
    monkeypatch.undo()
    changed = next(iter(photos))
    Image.open(changed).rotate(90, expand=True).save(changed)  # a fixed photo gets a new thumbnail
    assert make_thumbs([str(changed)], folder, 64)[str(changed)].sha256 not in {t.sha256 for t in first.values()}


def test_thumbnails_in_parallel_match_serial(tmp_path: Path) -> None:
    photos = rotated_photos(tmp_path / "photos", 9)
    serial = make_thumbs(map(str, photos), tmp_path / "a", 48, workers=0)
    parallel = make_thumbs(map(str, photos), tmp_path / "b", 48, workers=2)
    assert serial == parallel
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.listdir(tmp_path / "b"))


def test_thumbnail_shows_the_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "tagged.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: portrait on screen
    Image.new("RGB", (160, 96), (10, 120, 200)).save(path, exif=exif.tobytes())
    thumb = make_thumbs([str(path)], tmp_path / "t", 64)[str(path)]
    assert Image.open(tmp_path / "t" / thumb_name(thumb.sha256 or "", 64)).size == (38, 64)


def test_unreadable_images_keep_their_row(tmp_path: Path, photos: dict[Path, int]) -> None:
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    rows = [*orient_rows(photos), orient_rows({broken: 0})[0]]
    summary = review_report(write_orient(tmp_path / "o.csv", rows), tmp_path / "review", ReviewOptions(thumb_px=64))
    data = page_data(tmp_path / "review")
    assert (summary.rows, summary.thumbnails, summary.unreadable) == (5, 4, 1)
    k = data["columns"]["path"].index(str(broken))
    assert data["columns"]["sha256"][k] is None and "ImageError" in data["columns"]["error"][k]
    for name in ("index.html", "review.js", "review.css", "placeholder.svg"):
        assert (tmp_path / "review" / name).stat().st_size > 0


def test_orient_order_only_and_defaults(tmp_path: Path, photos: dict[Path, int]) -> None:
    rows = orient_rows(photos, [0.9, 0.3, 0.6, 0.95])
    rows[2]["action"] = "skipped (low confidence)"
    rows[3] |= {"fix": "exif", "action": "exif orientation set"}
    rows.append({name: None for name in rows[0]} | {"path": str(tmp_path / "gone.jpg"), "error": "ImageError: x"})
    report = write_orient(tmp_path / "o.parquet", rows)
    paths = [r["path"] for r in rows]

    def shown(**options) -> dict:
        review_report(report, tmp_path / "review", ReviewOptions(thumb_px=32, **options))
        return page_data(tmp_path / "review")["columns"]

    default = shown()
    assert default["path"] == [paths[1], paths[2], paths[0], paths[3], paths[4]]  # least certain first, errors last
    decision = dict(zip(default["path"], default["decision"], strict=True))
    assert [decision[p] for p in paths] == ["accept", "accept", "reject", "reject", "reject"]
    assert dict(zip(default["path"], default["fixed"], strict=True))[paths[3]] is True
    assert shown(only="uncertain")["path"] == [paths[1], paths[2]]
    rotated = [p for p, r in zip(paths, [*photos.values(), None], strict=True) if r not in (0, None)]
    assert sorted(shown(only="rotated")["path"]) == sorted(rotated)
    assert shown(sort="path")["path"] == sorted(paths)


def test_bad_options_and_folders(tmp_path: Path, photos: dict[Path, int]) -> None:
    report = write_orient(tmp_path / "o.csv", orient_rows(photos))
    for options, words in [({"only": "sideways"}, "only must be one of"), ({"thumb_px": 8}, "thumb"),
                           ({"uncertain": 2.0}, "uncertain"), ({"sort": "size"}, "sort")]:  # fmt: skip
        with pytest.raises(ReviewError, match=words):
            ReviewOptions(**options)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    with pytest.raises(ReviewError, match="did not write"):
        review_report(report, mine)
    assert (mine / "index.html").read_text() == "my own page"
    review_report(report, tmp_path / "review", ReviewOptions(thumb_px=32))
    review_report(report, tmp_path / "review", ReviewOptions(thumb_px=32))  # its own folder: written again


def test_names_survive_the_data_file(tmp_path: Path) -> None:
    odd = tmp_path / os.fsdecode(b'a "quoted" <script> \xff name.jpg')
    Image.new("RGB", (40, 30), (200, 30, 30)).save(odd, "JPEG")
    review_report(write_orient(tmp_path / "o.jsonl", orient_rows({odd: 0})), tmp_path / "r", ReviewOptions(thumb_px=32))
    assert page_data(tmp_path / "r")["columns"]["path"] == [str(odd)]


def test_embed_map_separates_clusters(tmp_path: Path, photos: dict[Path, int]) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 10
    vectors = [centres[i % 2] + rng.normal(size=16) * 0.1 for i in range(len(photos))]
    report = tmp_path / "e.parquet"
    with open_report(report, embed_schema(16)) as writer:
        writer.write(
            [{"path": str(p), "embedding": v.tolist(), "error": None} for p, v in zip(photos, vectors, strict=True)]
        )
    review_report(report, tmp_path / "review", ReviewOptions(thumb_px=32, projection="pca"))
    data = page_data(tmp_path / "review")
    points = np.array([data["map"]["x"], data["map"]["y"]]).T
    order = [str(p) for p in photos]
    cluster = np.array([order.index(p) % 2 for p in data["columns"]["path"]])
    assert data["map"]["projection"] == "pca" and points.min() >= 0 and points.max() <= 1
    gap = np.abs(points[cluster == 0, 0].mean() - points[cluster == 1, 0].mean())
    assert gap > 0.9  # the two clusters sit at the two ends of the first component


def test_projection_methods() -> None:
    vectors = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    points, method = project(vectors, method="pca")
    assert (
        method == "pca"
        and points.shape == (40, 2)
        and np.allclose(points.min(axis=0), 0)
        and np.allclose(points.max(axis=0), 1)
    )
    first = pca(vectors)[:, 0]
    assert np.var(first) >= np.var(pca(vectors)[:, 1])
    try:
        import umap  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ReviewError, match="umap-learn"):
            project(vectors, method="umap")
        assert project(vectors)[1] == "pca"


def test_review_of_a_real_dedup_report(tmp_path: Path, photos: dict[Path, int]) -> None:
    from typer.testing import CliRunner

    from roost.cli.app import app

    first = next(iter(photos))
    shutil.copy(first, first.with_name("copy.jpg"))
    report = tmp_path / "dups.csv"
    ran = CliRunner().invoke(app, ["dedup", str(tmp_path / "photos"), "--report", str(report)])
    assert ran.exit_code == 0, ran.output
    review_report(report, tmp_path / "review", ReviewOptions(thumb_px=32))
    c = page_data(tmp_path / "review")["columns"]
    assert set(c["path"][:2]) == {str(first), str(first.with_name("copy.jpg"))}  # the group first, keeper first
    assert c["group"][0] == c["group"][1] is not None and c["keeper"][:2] == [True, False]
    assert c["sha256"][0] == c["sha256"][1]  # one thumbnail for the same bytes
    assert all(g is None for g in c["group"][2:])


@pytest.mark.skipif(not PE.exists(), reason="shared fixtures not present")
def test_review_of_an_index_folder(tmp_path: Path, photos: dict[Path, int], one_thread: None) -> None:
    from typer.testing import CliRunner

    from roost.cli.app import app

    index = tmp_path / "photos.index"
    ran = CliRunner().invoke(app, ["index", str(tmp_path / "photos"), "-m", str(PE), "-o", str(index), "-j", "0"])
    assert ran.exit_code == 0, ran.output
    summary = review_report(index, tmp_path / "review", ReviewOptions(thumb_px=32))
    data = page_data(tmp_path / "review")
    assert summary.kind == "embed" and sorted(data["columns"]["path"]) == sorted(map(str, photos))
    assert all(v is not None for v in data["map"]["x"])
