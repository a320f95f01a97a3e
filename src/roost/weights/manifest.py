"""The pretrained-weights registry (spec ``api.md`` §2): manifest entries as data, not code.

The packaged ``manifest.json`` has the shape of Birder's manifest (``{name: {url, description, resolution,
formats: {fmt: {file_size, sha256}}, net: {network, tag}, task}}``). User manifests of the same shape are
read from ``ROOST_MANIFEST`` each time the registry is consulted, and ``register_weights`` adds entries
to :data:`REGISTRY`, the one module-level registry. Later sources win: packaged < ``ROOST_MANIFEST`` files
(in the order given) < ``register_weights``.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from roost.errors import FormatNotAvailableError, ManifestError, UnknownModelError
from roost.settings import Settings

DEFAULT_BASE_URL = "https://f000.backblazeb2.com/file/birder/models"
DEFAULT_TASK = "image_classification"


@dataclass(frozen=True)
class PretrainedEntry:
    """One published weights file set. ``formats`` maps a format to ``(file_size_mb, sha256)``."""

    name: str
    network: str
    tag: str | None
    url: str
    description: str
    resolution: tuple[int, int]
    formats: Mapping[str, tuple[float, str]] = field(hash=False)
    task: str = DEFAULT_TASK
    epoch: int | None = None

    @classmethod
    def from_dict(cls, name: str, entry: Mapping[str, Any]) -> PretrainedEntry:
        """Parse a Birder-style manifest entry; unknown keys are ignored."""
        try:
            net = entry["net"]
            formats = {
                str(fmt): (float(info["file_size"]), str(info["sha256"]).lower())
                for fmt, info in entry["formats"].items()
            }
            height, width = entry["resolution"]
            return cls(
                name=name,
                network=str(net["network"]),
                tag=net.get("tag"),
                url=str(entry.get("url") or DEFAULT_BASE_URL).rstrip("/"),
                description=str(entry.get("description", "")),
                resolution=(int(height), int(width)),
                formats=formats,
                task=str(entry.get("task") or DEFAULT_TASK),
                epoch=net.get("epoch"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ManifestError(f"malformed manifest entry {name!r}: {type(err).__name__}: {err}") from err

    def file_name(self, fmt: str) -> str:
        return f"{self.name}.{fmt}"

    def file_url(self, fmt: str) -> str:
        return f"{self.url}/{self.file_name(fmt)}"

    def sha256(self, fmt: str) -> str:
        return self.formats[fmt][1]

    def check_format(self, fmt: str) -> None:
        """Raise ``FormatNotAvailableError`` (a ``ValueError``, worded as the reference) for a format the
        entry does not publish; the message lists the ones it does."""
        if fmt not in self.formats:
            available = ", ".join(self.formats)
            raise FormatNotAvailableError(
                f"Requested format '{fmt}' not available for {self.name}, available formats are: {available}"
            )


def parse_manifest(data: Any, source: str) -> dict[str, PretrainedEntry]:
    if not isinstance(data, Mapping):
        raise ManifestError(f"{source}: a manifest is a JSON object of name -> entry")
    return {str(name): PretrainedEntry.from_dict(str(name), entry) for name, entry in data.items()}


def read_manifest(path: Path) -> dict[str, PretrainedEntry]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ManifestError(f"cannot read weights manifest {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise ManifestError(f"weights manifest {path} is not valid JSON: {err}") from err
    return parse_manifest(data, str(path))


@functools.cache
def packaged_manifest() -> Mapping[str, PretrainedEntry]:
    text = resources.files("roost.weights").joinpath("manifest.json").read_text(encoding="utf-8")
    return parse_manifest(json.loads(text), "roost/weights/manifest.json")


class WeightsRegistry:
    """Packaged entries, plus user manifests and registrations, merged when asked."""

    def __init__(self) -> None:
        self._registered: dict[str, PretrainedEntry] = {}

    def register(self, name: str, entry: Mapping[str, Any] | PretrainedEntry) -> PretrainedEntry:
        parsed = entry if isinstance(entry, PretrainedEntry) else PretrainedEntry.from_dict(name, entry)
        self._registered[name] = parsed
        return parsed

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)

    def entries(self, settings: Settings | None = None) -> dict[str, PretrainedEntry]:
        settings = settings or Settings.from_env()
        merged = dict(packaged_manifest())
        for path in settings.manifests:
            merged.update(read_manifest(path))
        merged.update(self._registered)
        return merged

    def get(self, name: str, settings: Settings | None = None) -> PretrainedEntry:
        entries = self.entries(settings)
        if name not in entries:
            raise UnknownModelError("pretrained weights", name, entries)
        return entries[name]

    def names(self, pattern: str = "*", settings: Settings | None = None) -> list[str]:
        return sorted(n for n in self.entries(settings) if fnmatch.fnmatchcase(n, pattern))


REGISTRY = WeightsRegistry()
"""The process-wide registry that ``register_weights`` fills (the only one)."""


def list_pretrained_models(pattern: str | None = "*") -> list[str]:
    """Names of the known pretrained weights matching a shell-style pattern (None: all), sorted."""
    return REGISTRY.names(pattern or "*")


def register_weights(name: str, entry: Mapping[str, Any]) -> None:
    """Add (or replace) a weights entry, given in the manifest's JSON shape."""
    REGISTRY.register(name, entry)
