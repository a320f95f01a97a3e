"""``roost orient``: find photos rotated by 90, 180 or 270 degrees and, if asked, turn them upright.

The model has four classes: the image *as displayed* (EXIF orientation applied) is rotated by 0, 90, 180
or 270 degrees counter-clockwise. Report columns: ``path, rotation, confidence, p0, p90, p180, p270,
action, fix, output, error``. ``action`` says what was decided or done; ``fix`` lists the fixes applied so
far (``copy``, ``exif``, ``inplace``, joined by ``+``); ``output`` is the copy written, or the backup kept.

Fixes (``fix``):

* ``exif`` sets the EXIF Orientation tag (combined with the one already there); nothing else changes.
* ``inplace`` rewrites the file upright (JPEGs losslessly in the DCT domain where possible) after writing
  a backup beside it (``<name>.orig``, never overwritten).
* ``copy`` writes an upright copy of *every* readable input under ``output_dir`` (upright and uncertain
  images copied unchanged), so that folder is the whole collection, upright. The layout below the one input
  folder is kept (with several inputs, below their common parent), so two inputs never collide; a file in
  the way that roost did not write is never overwritten.
* ``xmp`` writes (or merges into) an XMP sidecar beside the photo, ``photo.jpg.xmp`` or with
  ``sidecar="replace"`` ``photo.xmp``, whose ``tiff:Orientation`` shows it upright in photo libraries; the
  photo itself is never touched. The value is the file's own orientation (EXIF tag, HEIF/AVIF container
  transform, RAW orientation: what the model saw) combined with the rotation, so it does not depend on an
  older sidecar value, and running the fix again writes the same bytes.

HEIC, AVIF and camera RAW originals are never re-encoded: ``exif`` and ``inplace`` refuse them (per file,
naming ``--fix xmp``); ``copy`` re-encodes HEIC/AVIF copies upright (the copy is not the original) and
refuses rotated RAW files. Once a photo has a sidecar from ``xmp``, ``exif`` and ``inplace`` leave it alone
(the library would turn it twice); ``xmp`` after an in-file fix writes the file's new orientation.

Only a rotation at or above ``threshold`` is fixed. With a report, a run resumes: rows already reported are
not computed again, but the fixes they call for that were not applied yet are (report now, fix later, or
after a dry run), and failed fixes are retried. Every change is journaled first (``journal.py``), so a kill
at any instant never loses an original and never applies a fix twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from roost.errors import FixError, JobModelError, JobOptionError, RoostError
from roost.files.atomic import atomic_write, remove_stale_temps
from roost.files.exif import combine_orientation
from roost.files.heif import container_orientation, heif_kind, refusal, upright_copy
from roost.files.raw import is_raw_name, raw_orientation
from roost.files.rotate import exif_bytes, read_exif_orientation, upright_bytes, write_backup
from roost.files.xmp import Naming, check_naming, merge_sidecar, read_sidecar, sidecar_path
from roost.jobs.base import Job, ModelFacts, OnEvent, Row, RunOptions, Summary, check_fraction, ignore
from roost.jobs.engine import OnRows, execute
from roost.jobs.inputs import Item
from roost.jobs.journal import Journal, file_sha256, sha256

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions

ROTATIONS = (0, 90, 180, 270)
ROTNET = "rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet-capi"

ACTION_NONE = "none"
ACTION_LOW_CONFIDENCE = "skipped (low confidence)"
ACTION_ROTATE = "rotate"  # decided, not fixed (no fix asked)
ACTION_EXIF = "exif orientation set"
ACTION_COPIED = "copied unchanged"
ACTION_XMP = "xmp orientation set"
ACTION_REENCODED_COPY = "re-encoded upright copy"
ACTION_FAILED = "fix failed"

REPORT_SCHEMA = pa.schema(
    [("path", pa.string()), ("rotation", pa.int16()), ("confidence", pa.float32())]
    + [(f"p{r}", pa.float32()) for r in ROTATIONS]
    + [("action", pa.string()), ("fix", pa.string()), ("output", pa.string()), ("error", pa.string())]
)


class Fix(StrEnum):
    EXIF = "exif"
    COPY = "copy"
    INPLACE = "inplace"
    XMP = "xmp"


IN_FILE = {Fix.EXIF.value, Fix.INPLACE.value}  # fixes that change the input file itself
SHOWN_UPRIGHT = IN_FILE | {Fix.XMP.value}  # after any of these, viewers (or photo libraries) show it upright


def decide(probs: Sequence[float], threshold: float) -> tuple[int, float, str]:
    """``(rotation, confidence, action)`` from the four class probabilities (0, 90, 180, 270 CCW)."""
    if len(probs) != len(ROTATIONS):
        raise JobModelError(f"expected {len(ROTATIONS)} probabilities (0/90/180/270), got {len(probs)}")
    best = int(np.argmax(probs))
    rotation, confidence = ROTATIONS[best], float(probs[best])
    if confidence < threshold:
        return rotation, confidence, ACTION_LOW_CONFIDENCE
    return rotation, confidence, ACTION_NONE if rotation == 0 else ACTION_ROTATE


def copy_base(inputs: Sequence[str | os.PathLike[str]]) -> str:
    """The folder whose layout copies keep: the one input folder, else the common parent of all inputs."""
    keys = [os.path.abspath(os.fspath(p)) for p in inputs]
    if len(keys) == 1 and os.path.isdir(keys[0]):
        return keys[0]
    return os.path.commonpath([k if os.path.isdir(k) else os.path.dirname(k) for k in keys])


@dataclass
class OrientJob(Job):
    """Decide each image's rotation and apply the chosen fix (see the module docstring)."""

    fix: Fix | None = None
    output_dir: Path | None = None  # for Fix.COPY
    copy_base: str | None = None  # for Fix.COPY: see copy_base()
    threshold: float = 0.0
    dry_run: bool = False
    backup_suffix: str | None = ".orig"
    sidecar: Naming = Naming.APPEND  # for Fix.XMP
    journal: Journal | None = None  # beside the report; None without one
    name: str = "orient"
    output = "probs"
    schema: pa.Schema = field(default=REPORT_SCHEMA)
    fixed: int = 0
    swept: set[Path] = field(default_factory=set, repr=False)  # folders cleared of a killed run's temporaries
    sidecars: dict[Path, tuple[str, str]] = field(default_factory=dict, repr=False)  # written: (photo, sha256)

    def __post_init__(self) -> None:
        self.threshold = check_fraction("threshold", self.threshold)
        if self.fix is not None:
            self.fix = Fix(self.fix) if self.fix in set(Fix) else _bad_fix(self.fix)
        if self.fix is Fix.COPY and (self.output_dir is None or self.copy_base is None):
            raise JobOptionError("fix 'copy' needs output_dir (the folder the upright copies go to)")
        if self.backup_suffix is not None and (not self.backup_suffix or os.sep in self.backup_suffix):
            raise JobOptionError(f"backup_suffix must be a non-empty file-name suffix, got {self.backup_suffix!r}")
        self.sidecar = check_naming(self.sidecar)

    def bind(self, model: ModelFacts) -> pa.Schema:
        if len(model.class_names) != len(ROTATIONS):
            raise JobModelError(
                f"{model.name} has {len(model.class_names)} classes; an orientation model has 4 (0/90/180/270)"
            )
        return self.schema

    def values(self, output: np.ndarray) -> Row:
        rotation, confidence, action = decide(output.tolist(), self.threshold)
        probs = {f"p{r}": float(p) for r, p in zip(ROTATIONS, output, strict=True)}
        return {"rotation": rotation, "confidence": confidence, **probs, "action": action, "fix": None, "output": None}

    def state_columns(self) -> Sequence[str]:
        return self.schema.names

    def resume(self, row: Row) -> Literal["done", "rerun", "effect"]:
        return "effect" if self._wanted(row) else "done"

    def recover(self, state: dict[str, Row]) -> list[Row]:
        """Rows of fixes a killed run made but did not report (their target holds the ``after`` content)."""
        if self.journal is None:
            return []
        rows: dict[str, Row] = {}
        for record in self.journal.records:
            key = record["row"]["path"]
            if record["mode"] not in _applied(state.get(key, {})) and _happened(record):
                rows[key] = record["row"]
        self.journal.records = []
        return list(rows.values())

    def after_batch(self, rows: list[Row], items: Sequence[Item]) -> None:
        for row in rows:
            if self._wanted(row):
                self._apply(row)

    def tally(self, rows: Sequence[Row], counts: dict[str, int]) -> None:
        rotated = sum(1 for r in rows if r.get("rotation") not in (0, None) and self._actionable(r))
        counts["rotated"] = counts.get("rotated", 0) + rotated
        if self.fix is not None:
            counts["would fix" if self.dry_run else "fixed"] = self.fixed

    # ------------------------------------------------------------------ fixes
    def _actionable(self, row: Row) -> bool:
        return row["confidence"] is not None and row["confidence"] >= self.threshold

    def _wanted(self, row: Row) -> bool:
        """Whether the requested fix should now be applied to the file of this row."""
        if self.fix is None or row.get("rotation") is None:
            return False
        done = _applied(row)
        if self.fix.value in done or (self.fix.value in IN_FILE and done & SHOWN_UPRIGHT):
            return False
        return self.fix is Fix.COPY or (row["rotation"] != 0 and self._actionable(row))

    def _apply(self, row: Row) -> None:
        if self.dry_run:
            row["action"] = f"would fix ({self.fix})"
            self.fixed += 1
            return
        try:
            self._change(row)
        except (RoostError, OSError) as err:
            row["action"], row["error"] = ACTION_FAILED, f"{type(err).__name__}: {err}"
            return
        self.fixed += 1

    def _change(self, row: Row) -> None:
        src = Path(row["path"])
        data = src.read_bytes()
        done = _applied(row)
        rotation = 0 if done & IN_FILE or not self._actionable(row) else int(row["rotation"])
        assert self.fix is not None
        target = self._target(src)
        existing = read_sidecar(target) if self.fix is Fix.XMP else None
        new, action = fixed_bytes(src, data, rotation, self.fix, sidecar=existing)
        source, after = sha256(data), sha256(new)
        before = source  # a fix in the file itself
        if self.fix is Fix.COPY:
            before = file_sha256(target)
        elif self.fix is Fix.XMP:
            before = sha256(existing) if existing is not None else None
        if self.fix is Fix.COPY and before not in (None, after) and not self._wrote(target, before):
            raise FixError(f"{target} exists and was not written by roost; it is not overwritten")
        final = row | {"action": action, "fix": "+".join(sorted(done | {str(self.fix)})), "error": None}
        final["output"] = str(target) if self.fix in (Fix.COPY, Fix.XMP) else None
        if self.fix is Fix.XMP:
            self._claim(target, row["path"], after)
            if new == existing:  # already right: not rewritten (photo libraries watch mtimes)
                row.update(final)
                return
        self._sweep(target.parent, Path(os.path.realpath(src)).parent)
        if self.fix is Fix.INPLACE and self.backup_suffix is not None:  # before the change, never overwritten
            final["output"] = str(write_backup(target, data, self.backup_suffix))
        if self.journal is not None:
            self.journal.intent({"mode": str(self.fix), "source": source, "target": str(target),
                                 "before": before, "after": after, "row": final})  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        keep_mode = target if existing is not None else None  # a new sidecar gets the usual new-file mode
        atomic_write(target, new, mode_from=keep_mode if self.fix is Fix.XMP else src)
        row.update(final)

    def _claim(self, sidecar: Path, photo: str, after: str) -> None:
        """Refuse to give one sidecar two orientations (``photo.xmp`` is shared by ``photo.cr2`` and ``photo.jpg``)."""
        first, sha = self.sidecars.setdefault(sidecar, (photo, after))
        if first != photo and sha != after:
            raise FixError(
                f"{sidecar} is also the sidecar of {first}, which needs another orientation; "
                "use --sidecar append (one sidecar per file)"
            )

    def _sweep(self, *folders: Path) -> None:
        """Remove the temporaries that a killed run's atomic writes left in the folders this job writes to.

        Once per folder and run, before the first write there: a resumed run redoes each unfinished write, so
        what a kill left half written is never needed (this job writes one file at a time).
        """
        for folder in folders:
            if folder not in self.swept and folder.is_dir():
                remove_stale_temps(folder, older_than_s=0)
            self.swept.add(folder)

    def _target(self, src: Path) -> Path:
        """The file a fix writes: the copy, the sidecar beside ``src``, or the file itself (through links)."""
        if self.fix is Fix.COPY:
            assert self.output_dir is not None and self.copy_base is not None
            return self.output_dir / os.path.relpath(src, self.copy_base)
        if self.fix is Fix.XMP:
            return sidecar_path(src, self.sidecar)
        return Path(os.path.realpath(src))  # a fix in the file itself: a symbolic link stays a link to it

    def _wrote(self, target: Path, sha: str | None) -> bool:
        return self.journal is not None and self.journal.wrote(str(target), sha)


def fixed_bytes(src: Path, data: bytes, rotation: int, fix: Fix, *, sidecar: bytes | None = None) -> tuple[bytes, str]:
    """The new content of ``fix``'s target for the photo ``src`` (its bytes ``data``) seen rotated by
    ``rotation`` CCW, and the action; ``sidecar`` is the existing sidecar's bytes (``Fix.XMP``).

    Raises ``OrientFixError`` (naming ``--fix xmp``) where the fix would re-encode a HEIC, AVIF or RAW original.
    """
    if fix is Fix.XMP:
        orientation = combine_orientation(file_orientation(src, data), rotation)
        return merge_sidecar(sidecar, orientation=orientation), ACTION_XMP
    if fix is Fix.COPY and rotation == 0:
        return data, ACTION_COPIED
    kind = heif_kind(data[:64]) or ("camera RAW" if is_raw_name(src.name) else None)
    if kind in ("HEIF", "AVIF") and fix is Fix.COPY:
        return upright_copy(data, kind, rotation), ACTION_REENCODED_COPY
    if kind is not None:
        raise refusal(kind, str(fix))
    if fix is Fix.EXIF:
        return exif_bytes(data, rotation), ACTION_EXIF
    return upright_bytes(data, rotation)


def file_orientation(src: Path, data: bytes) -> int:
    """The orientation (EXIF value 1..8) a viewer applies to the stored pixels of ``src``: the EXIF tag, the
    HEIF/AVIF container's transform, or a RAW file's own orientation."""
    if heif_kind(data[:64]) is not None:
        return container_orientation(data)
    if is_raw_name(src.name):
        return raw_orientation(data, str(src))
    return read_exif_orientation(data)


def _applied(row: Row) -> set[str]:
    """The fixes a row says were applied (its ``fix`` column: modes joined by ``+``)."""
    return {mode for mode in str(row.get("fix") or "").split("+") if mode}


def _happened(record: dict[str, Any]) -> bool:
    """Whether a journaled change is on disk: the target holds ``after`` and (for copies) the source is unchanged."""
    if file_sha256(Path(record["target"])) != record["after"]:
        return False
    return record["mode"] != Fix.COPY or file_sha256(Path(record["row"]["path"])) == record["source"]


def _bad_fix(value: Any) -> Fix:
    raise JobOptionError(f"fix must be one of exif, copy, inplace, xmp; got {value!r}")


def journal_path(report: str | os.PathLike[str]) -> Path:
    """Where the fixes of a report are journaled: ``<report>.fixes.jsonl`` beside it."""
    return Path(os.fspath(report) + ".fixes.jsonl")


def orient_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str] = ROTNET,
    report: str | os.PathLike[str] | None = None,
    fix: Fix | str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    threshold: float = 0.0,
    dry_run: bool = False,
    backup_suffix: str | None = ".orig",
    sidecar: Naming | str = Naming.APPEND,
    options: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
) -> Summary:
    """Predict each image's rotation, append the rows to ``report`` and apply ``fix`` (see the module docstring)."""
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        _check_output_dir(out, inputs)
    job = OrientJob(
        fix=Fix(fix) if fix in set(Fix) else fix,  # type: ignore[arg-type]
        output_dir=out, copy_base=copy_base(inputs) if out is not None else None, threshold=threshold,
        dry_run=dry_run, backup_suffix=backup_suffix, sidecar=check_naming(sidecar),
        journal=Journal(journal_path(report)) if report is not None and fix is not None else None,
    )  # fmt: skip
    exclude = [p for p in (out, journal_path(report) if report is not None else None) if p is not None]
    try:
        return execute(job, inputs, model=model, report=report, options=options or RunOptions(), ray=ray,
                       exclude=exclude, on_event=on_event, on_rows=on_rows)  # fmt: skip
    finally:
        if job.journal is not None:
            job.journal.close()


def _check_output_dir(out: Path, inputs: Sequence[str | os.PathLike[str]]) -> None:
    if out.exists() and not out.is_dir():
        raise JobOptionError(f"output_dir {out} is a file; give a folder for the upright copies")
    base = os.path.abspath(out)
    for given in inputs:
        key = os.path.abspath(os.fspath(given))
        if key == base or key.startswith(base.rstrip(os.sep) + os.sep):
            raise JobOptionError(f"output_dir {out} holds the input {given}; copies must go to a folder outside it")
