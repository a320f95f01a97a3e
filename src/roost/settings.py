"""Run-time settings, resolved from the environment when a function asks for them (never at import).

| variable | meaning | default |
|---|---|---|
| ``ROOST_HOME`` | cache root: weights in ``<home>/weights``, ONNX exports in ``<home>/onnx`` | ``~/.cache/roost`` |
| ``ROOST_OFFLINE`` / ``HF_HUB_OFFLINE`` | no network: only files already on disk are used | off |
| ``ROOST_MANIFEST`` | extra weights manifests (JSON), several joined with ``:`` | none |
| ``ROOST_CONNECT_TIMEOUT`` | seconds a weights server has to answer before a download gives up | 2 |
| ``ROOST_DEVICE`` | default torch device for the tools that pick one | none (CPU) |
| ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` / ``HF_HOME`` | passed on to huggingface_hub at call time | its defaults |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from roost.errors import SettingsError

_TRUE = {"1", "true", "yes", "on"}


def _flag(env: Mapping[str, str], *names: str) -> bool:
    return any(env.get(name, "").strip().lower() in _TRUE for name in names)


def _hf_cache(env: Mapping[str, str]) -> Path | None:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    offline: bool = False
    manifests: tuple[Path, ...] = ()
    device: str | None = None
    hf_endpoint: str | None = None
    hf_cache: Path | None = None
    connect_timeout: float = 2.0

    @property
    def weights_dir(self) -> Path:
        return self.home / "weights"

    @property
    def onnx_cache_dir(self) -> Path:
        """Where the ONNX Runtime backend keeps its exports, one folder per model, size and version set."""
        return self.home / "onnx"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (``os.environ`` by default) now."""
        env = os.environ if env is None else env
        home = Path(env.get("ROOST_HOME") or "~/.cache/roost").expanduser()
        manifests = tuple(Path(p).expanduser() for p in env.get("ROOST_MANIFEST", "").split(":") if p)
        endpoint = env.get("HF_ENDPOINT", "").rstrip("/") or None
        return cls(
            home=home,
            offline=_flag(env, "ROOST_OFFLINE", "HF_HUB_OFFLINE"),
            manifests=manifests,
            device=env.get("ROOST_DEVICE") or None,
            hf_endpoint=endpoint,
            hf_cache=_hf_cache(env),
            connect_timeout=_seconds(env, "ROOST_CONNECT_TIMEOUT", cls.connect_timeout),
        )
