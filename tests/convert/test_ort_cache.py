"""The ONNX Runtime backend's export cache: exported once per checkpoint, rebuilt when stale or broken."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from roost.convert import onnx_export
from roost.settings import Settings
from roost.weights.load import load_model
from tests.weights.conftest import entry, write_manifest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from roost.inference.ort import export_key, ort_backend_for

STEM = "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet"
SIZE = (252, 252)


@pytest.fixture
def checkpoint(shared_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny rotnet checkpoint, so a test can change its mtime."""
    copy = tmp_path / f"{STEM}.pt"
    shutil.copyfile(shared_dir / "fixtures" / "checkpoints" / f"{STEM}.pt", copy)
    return copy


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"ROOST_HOME": str(tmp_path / "home")})


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every ONNX file the exporter writes, in order."""
    written: list[Path] = []
    real = onnx_export.write_onnx

    def counting(*args, **kwargs) -> Path:
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(onnx_export, "write_onnx", counting)
    return written


def _backend(checkpoint: Path, settings: Settings, quantize: bool = False):
    net, info = load_model(None, checkpoint, inference=True)  # each run loads the checkpoint afresh
    return net, ort_backend_for(net, info, SIZE, quantize=quantize, source=checkpoint, settings=settings)


def _inputs() -> torch.Tensor:
    return torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(5))


def test_second_run_uses_the_cached_export(checkpoint: Path, settings: Settings, exports: list[Path]) -> None:
    net, first = _backend(checkpoint, settings)
    assert not first.from_cache and len(exports) == 1
    assert first.path.parent.parent == settings.onnx_cache_dir
    assert first.path.parent.name.startswith(f"{STEM}-252x252-")
    _, second = _backend(checkpoint, settings)
    assert second.from_cache and second.path == first.path and len(exports) == 1
    x = _inputs()
    with torch.inference_mode():
        assert torch.equal(second(x), first(x))
        torch.testing.assert_close(second(x), net(x), atol=1e-4, rtol=0)
    assert [p.name for p in settings.onnx_cache_dir.iterdir()] == [first.path.parent.name]  # no temporaries


def test_changed_checkpoint_is_exported_again(checkpoint: Path, settings: Settings, exports: list[Path]) -> None:
    _, first = _backend(checkpoint, settings)
    st = checkpoint.stat()
    os.utime(checkpoint, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, rewritten later
    _, second = _backend(checkpoint, settings)
    assert not second.from_cache and len(exports) == 2 and second.path != first.path
    _, third = _backend(checkpoint, settings)
    assert third.from_cache and third.path == second.path


def test_broken_cached_file_is_rebuilt(checkpoint: Path, settings: Settings, exports: list[Path]) -> None:
    net, first = _backend(checkpoint, settings)
    first.path.write_bytes(b"not an onnx graph")
    _, second = _backend(checkpoint, settings)
    assert not second.from_cache and len(exports) == 2 and second.path == first.path
    with torch.inference_mode():
        torch.testing.assert_close(second(_inputs()), net(_inputs()), atol=1e-4, rtol=0)
    _, third = _backend(checkpoint, settings)
    assert third.from_cache


def test_key_follows_what_the_export_depends_on(
    checkpoint: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, info = load_model(None, checkpoint, inference=True)

    def key(source: str | Path = checkpoint, size: tuple[int, int] = SIZE, quantize: bool = False) -> str:
        return export_key(net, info, size, quantize=quantize, source=source, settings=Settings.from_env())

    monkeypatch.setenv("ROOST_HOME", str(tmp_path / "home"))
    base = key()
    assert key() == base
    assert len({base, key(size=(224, 224)), key(quantize=True)}) == 3
    assert key(quantize=True).startswith(f"{STEM}-252x252-int8-")
    moved = tmp_path / "elsewhere" / checkpoint.name
    moved.parent.mkdir()
    shutil.copy2(checkpoint, moved)  # same bytes and mtime, another file
    assert key(moved) != base
    # Published weights are known by their sha256: a new file under the same name is a new export.
    name = "tiny-rotnet_published"
    manifest = tmp_path / "m.json"
    monkeypatch.setenv("ROOST_MANIFEST", str(manifest))
    write_manifest(manifest, {name: entry("http://127.0.0.1:1/m", "rope_vit_reg4_b14", {"pt": b"one"})})
    published = key(name)
    assert published.startswith(f"{name}-252x252-") and key(name) == published
    write_manifest(manifest, {name: entry("http://127.0.0.1:1/m", "rope_vit_reg4_b14", {"pt": b"two"})})
    assert key(name) != published
