"""Roost's exceptions: a few specific classes, all under RoostError.

Each also derives from the built-in class that Birder raises in the same situation, so code written
against the reference (``except KeyError``, ``except ValueError``) keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RoostError(Exception):
    """Base class of every error roost raises on purpose."""


class UnknownModelError(RoostError, KeyError):
    """A network or weights name that roost does not know; the message lists close names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        self.name = name
        self.suggestions = close
        super().__init__(f"Unknown {kind} {name!r}.{hint}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ConfigError(RoostError, ValueError):
    """An invalid network configuration or name."""


class InputShapeError(RoostError, ValueError):
    """An input tensor whose rank, channels or spatial size the model cannot take."""


class ChecksumError(RoostError):
    """A downloaded or cached file whose sha256 differs from the manifest."""


class WeightsNotFoundError(RoostError, FileNotFoundError):
    """Weights that are neither cached nor downloadable (offline, or missing at the source)."""


class CheckpointError(RoostError, ValueError):
    """A checkpoint file that cannot be read or does not fit the network."""


class ImageError(RoostError, ValueError):
    """An image that cannot be decoded (corrupt, truncated, unsupported, too large)."""


class ManifestError(RoostError, ValueError):
    """A weights manifest (packaged, from ``ROOST_MANIFEST`` or registered) that is malformed."""


class DownloadError(RoostError, OSError):
    """A download that failed part-way (network error, truncated body); running it again resumes it."""


class TransformError(RoostError, ValueError):
    """Invalid transform arguments: an unknown RGB preset, a bad size or crop ratio."""


class ReportError(RoostError, ValueError):
    """A report file (CSV / JSON lines / Parquet) with an unknown extension or columns that do not match."""


class OrientFixError(RoostError, ValueError):
    """An orientation fix that cannot be applied: no EXIF in the format, several frames, the source as target."""


class ConversionError(RoostError, ValueError):
    """A foreign checkpoint that does not convert exactly: keys left over, keys missing, shapes that differ."""


class ExportError(RoostError, RuntimeError):
    """An export (ONNX, pt2, TorchScript) that fails, or whose outputs differ from the eager model's."""


class TrainingConfigError(RoostError, ValueError):
    """Training options that contradict each other or the data (bad batch split, empty folders, unknown keys)."""


class ResumeError(RoostError, ValueError):
    """A training-state file that is missing, unreadable or from a run with a different configuration."""


class EngineError(RoostError, ValueError):
    """Options the Ray engine cannot honour: ``ray`` not installed, a report that is not Parquet, fixes on URIs."""


class JobOptionError(RoostError, ValueError):
    """A batch-job option out of range or contradicting another (checked before any work starts)."""


class JobModelError(RoostError, ValueError):
    """A model that does not suit the job (an orientation job needs 4 classes, predict a classifier, …)."""


class ReviewError(RoostError, ValueError):
    """A review that cannot be written (a folder holding other files) or decisions that cannot be applied."""


class FixError(RoostError):
    """A file fix that was refused to keep the user's data safe (a target not written by roost, a changed file)."""


class FormatNotAvailableError(RoostError, ValueError):
    """A file format that published weights do not come in; the message lists the formats they have."""


class SettingsError(RoostError, ValueError):
    """An environment variable roost reads (``ROOST_*``) holding a value it cannot use."""


class XmpError(RoostError, ValueError):
    """An XMP sidecar that is not well-formed XMP (it is left as it is), or a value XMP cannot hold."""


class SearchIndexError(RoostError, ValueError):
    """An embedding index (``roost index``) that is missing, half-written or made with another model."""
