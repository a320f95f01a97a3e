"""Inputs for the review tests: small real photos turned by known angles, and reports of every kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from roost.jobs.orient import REPORT_SCHEMA
from roost.jobs.report import open_report
from roost.review.kinds import DEDUP_SCHEMA
from tests.conftest import SHARED

PHOTOS = SHARED / "photos"
CKPT = SHARED / "fixtures" / "checkpoints"
ROTNET = CKPT / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = CKPT / "rope_vit_reg4_b14_tiny-places.safetensors"
PE = CKPT / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
ANGLES = (0, 90, 180, 270)


def rotated_photos(folder: Path, count: int, size: tuple[int, int] = (160, 96)) -> dict[Path, int]:
    """``count`` real photos, resized to ``size`` (MCU-aligned) and turned counter-clockwise by 0/90/180/270."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[Path, int] = {}
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))[:count]):
        angle = ANGLES[i % 4]
        image = Image.open(photo).convert("RGB").resize(size).rotate(angle, expand=True)
        path = folder / f"{photo.stem}_{angle}.jpg"
        image.save(path, quality=92)
        made[path] = angle
    return made


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def orient_rows(photos: dict[Path, int], confidences: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Orient report rows that predict each photo's true angle, with the given confidences."""
    rows = []
    for k, (path, angle) in enumerate(photos.items()):
        conf = confidences[k] if confidences is not None else 0.9
        probs = {f"p{a}": conf if a == angle else (1 - conf) / 3 for a in ANGLES}
        action = "rotate" if angle else "none"
        rows.append({"path": str(path), "rotation": angle, "confidence": conf, **probs, "action": action,
                     "fix": None, "output": None, "error": None})  # fmt: skip
    return rows


def write_orient(report: Path, rows: list[dict[str, Any]]) -> Path:
    with open_report(report, REPORT_SCHEMA) as writer:
        writer.write(rows)
    return report


def write_dedup(report: Path, groups: list[list[Path]], loose: Sequence[Path] = ()) -> Path:
    """A dedup report: each group's first path is its keeper; ``loose`` files are in no group."""
    rows = []
    for g, members in enumerate(groups):
        for k, path in enumerate(members):
            keeper, match = ("true" if k == 0 else "false"), ("exact" if k == 1 else "near")
            rows.append({"path": str(path), "group": g, "keeper": keeper, "match": match,
                         "similarity": 1.0 - 0.02 * k, "error": None})  # fmt: skip
    rows += [{"path": str(p), "group": None, "keeper": None, "match": None, "similarity": None, "error": None}
             for p in loose]  # fmt: skip
    with open_report(report, DEDUP_SCHEMA) as writer:
        writer.write(rows)
    return report


def page_data(folder: Path) -> dict[str, Any]:
    """The data a review folder's page reads (``data.js``)."""
    text = (folder / "data.js").read_text(encoding="utf-8")
    prefix = "window.ROOST_REVIEW = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))
