"""How fast a ``roost review`` page opens in headless Chromium, against the number of report rows.

    python bench/review_open.py                      # 1k, 10k and 100k rows
    python bench/review_open.py --rows 100000 --repeat 5

Each report is a synthetic orient report whose rows share eight thumbnails of real photos (making 100k
thumbnails would measure the thumbnailer, not the page). The page is written as ``roost review`` writes it,
opened from ``file://`` with the network off, and timed from navigation start to the first page of rows
on screen (``window.ROOST_READY``, set by the page), the median of ``--repeat`` fresh tabs. Also shown: the
size of ``data.js`` and the time a path filter over all rows takes to redraw.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roost.review.kinds import read_report
from roost.review.page import ReviewOptions, build_data, write_page
from roost.review.thumbs import make_thumbs
from tests.review.helpers import orient_rows, rotated_photos, write_orient


def write_review(folder: Path, rows: int) -> Path:
    photos = rotated_photos(folder / "photos", 8)
    thumbs = make_thumbs([str(p) for p in photos], folder / "review" / "thumbs")
    base = read_report(write_orient(folder / "orient.csv", orient_rows(photos)))
    many = [base.rows[i % 8] | {"path": f"/photos/{i:06d}.jpg", "confidence": (i % 997) / 997} for i in range(rows)]
    shared = {row["path"]: thumbs[base.rows[i % 8]["path"]] for i, row in enumerate(many)}
    write_page(folder / "review", build_data(base, many, shared, ReviewOptions()))
    return folder / "review"


def measure(browser, review: Path, repeat: int) -> tuple[float, float]:
    opened, filtered = [], []
    for _ in range(repeat):
        page = browser.new_context(offline=True, viewport={"width": 1400, "height": 900}).new_page()
        page.goto((review / "index.html").as_uri())
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        opened.append(page.evaluate("window.ROOST_READY") / 1000)
        filtered.append(page.evaluate(
            "(() => { const t = performance.now(); const f = document.getElementById('f-path');"
            " f.value = '7'; f.dispatchEvent(new Event('input')); return performance.now() - t; })()"
        ) / 1000)  # fmt: skip
        page.context.close()
    return statistics.median(opened), statistics.median(filtered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    table = Table("rows", "data.js (MB)", "open: first rows (s)", "filter all rows (s)")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for rows in args.rows:
            review = write_review(Path(tmp) / str(rows), rows)
            opened, filtered = measure(browser, review, args.repeat)
            size = (review / "data.js").stat().st_size / 1e6
            table.add_row(f"{rows:,}", f"{size:.1f}", f"{opened:.3f}", f"{filtered:.3f}")
        browser.close()
    Console().print(table)


if __name__ == "__main__":
    main()
