"""Settings are read from the environment when asked, never at import."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import SettingsError
from roost.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.home == Path("~/.cache/roost").expanduser()
    assert s.weights_dir == s.home / "weights"
    assert not s.offline and s.manifests == () and s.hf_endpoint is None and s.hf_cache is None
    assert s.onnx_cache_dir == s.home / "onnx"
    assert s.connect_timeout == 2.0


@pytest.mark.parametrize(("env", "offline"), [
    ({"ROOST_OFFLINE": "1"}, True),
    ({"HF_HUB_OFFLINE": "true"}, True),
    ({"ROOST_OFFLINE": "0"}, False),
    ({"ROOST_OFFLINE": ""}, False),
])
def test_offline(env: dict[str, str], offline: bool) -> None:
    assert Settings.from_env(env).offline is offline


def test_values() -> None:
    s = Settings.from_env({
        "ROOST_HOME": "/tmp/rh",
        "ROOST_MANIFEST": "/a.json::/b.json",
        "HF_ENDPOINT": "http://127.0.0.1:5/",
        "HF_HOME": "/tmp/hfh",
        "ROOST_DEVICE": "cuda:1",
        "ROOST_CONNECT_TIMEOUT": "0.5",
    })
    assert s.connect_timeout == 0.5
    assert s.home == Path("/tmp/rh") and s.manifests == (Path("/a.json"), Path("/b.json"))
    assert s.hf_endpoint == "http://127.0.0.1:5" and s.hf_cache == Path("/tmp/hfh/hub") and s.device == "cuda:1"
    assert Settings.from_env({"HF_HUB_CACHE": "/c", "HF_HOME": "/h"}).hf_cache == Path("/c")


def test_read_when_called(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    assert Settings.from_env().home == tmp_path


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_bad_connect_timeout_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=f"ROOST_CONNECT_TIMEOUT .*{value!r}"):
        Settings.from_env({"ROOST_CONNECT_TIMEOUT": value})
