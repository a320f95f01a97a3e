"""Downloads against loopback servers: sha256, truncation and resume, offline and unreachable servers,
progress callbacks, Hugging Face endpoint."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

import roost
from roost.errors import (
    ChecksumError,
    DownloadError,
    FormatNotAvailableError,
    RoostError,
    UnknownModelError,
    WeightsNotFoundError,
)
from roost.settings import Settings
from roost.weights import hub
from roost.weights.hub import DownloadProgress
from roost.weights.manifest import REGISTRY, PretrainedEntry
from tests.weights.conftest import COMMIT, Server, entry, sha256_hex, write_manifest

# huggingface_hub reads HF_ENDPOINT when imported; it is imported above, before any test sets the
# variable, so the endpoint test passes only when roost hands the endpoint over at call time.
assert huggingface_hub.constants.ENDPOINT
NETWORK = "rope_vit_reg4_b14"
NAME = f"{NETWORK}_tiny"


@pytest.fixture(scope="module")
def fixture_files(request: pytest.FixtureRequest) -> dict[str, bytes]:
    shared = request.getfixturevalue("shared_dir")
    folder = shared / "fixtures" / "checkpoints"
    stem = "rope_vit_reg4_b14_tiny-places"
    return {fmt: (folder / f"{stem}.{fmt}").read_bytes() for fmt in ("pt", "safetensors")}


@pytest.fixture
def served(
    file_server: Server, fixture_files: dict[str, bytes], roost_env: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Server:
    """The tiny-places checkpoint served over HTTP and registered through a temporary ROOST_MANIFEST."""
    for fmt, data in fixture_files.items():
        file_server.state.files[f"/models/{NAME}.{fmt}"] = data
    user = {NAME: entry(f"{file_server.url}/models", NETWORK, fixture_files)}
    manifest = write_manifest(tmp_path / "user.json", user)
    monkeypatch.setenv("ROOST_MANIFEST", str(manifest))
    return file_server


def _cache_files(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_checks_sha256_and_loads(served: Server, roost_env: Path) -> None:
    net, info = roost.load_pretrained_model(NAME, inference=True, progress_bar=False)
    assert (roost_env / "weights" / f"{NAME}.pt").is_file()
    assert _cache_files(roost_env) == [f"{NAME}.pt"]
    assert info.class_to_idx == {f"class_{i:02d}": i for i in range(6)}
    assert not net.training
    assert served.state.gets()[0][2]["User-Agent"].startswith("roost/")
    # A second load uses the verified cache: no request at all.
    before = len(served.state.requests)
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert len(served.state.requests) == before


def test_safetensors_format_and_dst(served: Server, roost_env: Path, tmp_path: Path) -> None:
    dst = tmp_path / "elsewhere" / "model.safetensors"
    _, info = roost.load_pretrained_model(NAME, dst=dst, file_format="safetensors", progress_bar=False)
    assert dst.is_file()
    assert info.rgb_stats["mean"] == [0.5191, 0.5306, 0.4877]  # lists, as decoded from JSON
    assert _cache_files(roost_env) == []


def test_checksum_mismatch_leaves_nothing(
    file_server: Server, fixture_files: dict[str, bytes], roost_env: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    file_server.state.files[f"/models/{NAME}.pt"] = fixture_files["pt"]
    wrong = "0" * 64
    bad = entry(f"{file_server.url}/models", NETWORK, {"pt": fixture_files["pt"]}, sha={"pt": wrong})
    monkeypatch.setenv("ROOST_MANIFEST", str(write_manifest(tmp_path / "m.json", {NAME: bad})))
    with pytest.raises(ChecksumError) as err:
        roost.load_pretrained_model(NAME, progress_bar=False)
    assert wrong in str(err.value)
    assert sha256_hex(fixture_files["pt"]) in str(err.value)
    assert _cache_files(roost_env) == []


def test_truncated_download_then_resume(served: Server, roost_env: Path, fixture_files: dict[str, bytes]) -> None:
    served.state.truncate_next = 1
    with pytest.raises(DownloadError, match="resume"):
        roost.load_pretrained_model(NAME, progress_bar=False)
    partial = roost_env / "weights" / f"{NAME}.pt.partial"
    assert not (roost_env / "weights" / f"{NAME}.pt").exists()
    half = partial.stat().st_size
    assert 0 < half < len(fixture_files["pt"])
    events: list[DownloadProgress] = []
    roost.load_pretrained_model(NAME, on_progress=events.append)
    assert served.state.gets()[-1][2].get("Range") == f"bytes={half}-"
    assert events[0].done == half and events[-1].done == events[-1].total == len(fixture_files["pt"])
    assert _cache_files(roost_env) == [f"{NAME}.pt"]
    assert (roost_env / "weights" / f"{NAME}.pt").read_bytes() == fixture_files["pt"]


def test_resume_falls_back_when_range_is_ignored(served: Server, roost_env: Path) -> None:
    served.state.truncate_next = 1
    with pytest.raises(DownloadError):
        roost.load_pretrained_model(NAME, progress_bar=False)
    served.state.honour_range = False
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert _cache_files(roost_env) == [f"{NAME}.pt"]


def test_stale_partial_larger_than_file_restarts(served: Server, roost_env: Path) -> None:
    folder = roost_env / "weights"
    folder.mkdir(parents=True)
    (folder / f"{NAME}.pt.partial").write_bytes(b"x" * (10 * 1024 * 1024))  # server answers 416
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert _cache_files(roost_env) == [f"{NAME}.pt"]


def test_corrupt_cached_file_is_replaced(served: Server, roost_env: Path) -> None:
    roost.load_pretrained_model(NAME, progress_bar=False)
    cached = roost_env / "weights" / f"{NAME}.pt"
    cached.write_bytes(b"corrupt")
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert len(served.state.gets()) == 2
    assert cached.stat().st_size > 1000


def test_wrong_user_dst_is_refused(served: Server, tmp_path: Path) -> None:
    dst = tmp_path / "mine.pt"
    dst.write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="delete it"):
        roost.load_pretrained_model(NAME, dst=dst, progress_bar=False)
    assert dst.read_bytes() == b"something else"


def test_offline_missing_file_names_url_and_path(
    served: Server, roost_env: Path, monkeypatch: pytest.MonkeyPatch, fixture_files: dict[str, bytes]
) -> None:
    monkeypatch.setenv("ROOST_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        roost.load_pretrained_model(NAME, progress_bar=False)
    message = str(err.value)
    assert f"{served.url}/models/{NAME}.pt" in message
    assert str(roost_env / "weights" / f"{NAME}.pt") in message
    assert served.state.requests == []
    # Following the message works: a file placed there by hand loads with no network.
    placed = roost_env / "weights" / f"{NAME}.pt"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(fixture_files["pt"])
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert served.state.requests == []


def test_offline_uses_cached_file(served: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    roost.load_pretrained_model(NAME, progress_bar=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    count = len(served.state.requests)
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert len(served.state.requests) == count


def test_missing_at_source(served: Server, roost_env: Path) -> None:
    served.state.files.clear()
    with pytest.raises(WeightsNotFoundError, match="404"):
        roost.load_pretrained_model(NAME, progress_bar=False)
    assert _cache_files(roost_env) == []


@pytest.fixture
def refusing() -> str:
    """The URL of a loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent() -> Iterator[str]:
    """The URL of a loopback server that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# (server fixture, the most seconds the failure may take): the default connect timeout is 2 s
UNREACHABLE = [("refusing", 1.0), ("silent", 3.0)]


def _fails_fast(limit: float, url: str, target: Path) -> str:
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        roost.load_pretrained_model(NAME, progress_bar=False)
    assert time.monotonic() - start < limit
    message = str(err.value)
    assert "\n" not in message and "cannot reach 127.0.0.1:" in message
    assert f"Download {url} and place it at {target} " in message
    return message


@pytest.mark.parametrize(("server", "limit"), UNREACHABLE)
def test_unreachable_server_fails_fast_naming_the_file_place(
    server: str, limit: float, request: pytest.FixtureRequest, roost_env: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = request.getfixturevalue(server)
    dead = entry(f"{base}/models", NETWORK, {"pt": b"x"})
    monkeypatch.setenv("ROOST_MANIFEST", str(write_manifest(tmp_path / "m.json", {NAME: dead})))
    message = _fails_fast(limit, f"{base}/models/{NAME}.pt", roost_env / "weights" / f"{NAME}.pt")
    assert message.startswith(f"{NAME}.pt is not on disk")
    assert _cache_files(roost_env) == []


@pytest.mark.parametrize(("server", "limit"), UNREACHABLE)
def test_unreachable_huggingface_endpoint_fails_fast(
    server: str, limit: float, request: pytest.FixtureRequest, roost_env: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """huggingface_hub alone retries such an endpoint for about 25 s."""
    base = request.getfixturevalue(server)
    url = "https://huggingface.co/test-org/tiny-places/resolve/main"
    manifest = write_manifest(tmp_path / "m.json", {NAME: entry(url, NETWORK, {"pt": b"x"})})
    monkeypatch.setenv("ROOST_MANIFEST", str(manifest))
    monkeypatch.setenv("HF_ENDPOINT", base)
    _fails_fast(limit, f"{base}/test-org/tiny-places/resolve/main/{NAME}.pt", roost_env / "weights" / f"{NAME}.pt")


def test_connect_timeout_comes_from_the_environment(
    silent: str, roost_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = entry(f"{silent}/models", NETWORK, {"pt": b"x"})
    monkeypatch.setenv("ROOST_MANIFEST", str(write_manifest(tmp_path / "m.json", {NAME: dead})))
    monkeypatch.setenv("ROOST_CONNECT_TIMEOUT", "0.2")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"no answer within 0\.2 s|timed out"):
        roost.load_pretrained_model(NAME, progress_bar=False)
    assert time.monotonic() - start < 1.0


def test_unreachable_probe_counts_any_status_as_an_answer(served: Server, refusing: str) -> None:
    assert hub.unreachable(f"{served.url}/models/{NAME}.pt", 2.0) is None
    assert hub.unreachable(f"{served.url}/no/such/file", 2.0) is None  # a 404 is an answer
    assert "refused" in (hub.unreachable(f"{refusing}/x", 2.0) or "")


def test_unknown_name_suggests(served: Server) -> None:
    with pytest.raises(UnknownModelError) as err:
        roost.load_pretrained_model(NAME.replace("tiny", "tinny"), progress_bar=False)
    assert isinstance(err.value, KeyError)
    assert NAME in err.value.suggestions
    assert served.state.requests == []


def test_format_errors_come_before_any_download(served: Server) -> None:
    message = f"Requested format 'pt2' not available for {NAME}, available formats are: pt, safetensors"
    with pytest.raises(FormatNotAvailableError, match=message) as err:
        roost.load_pretrained_model(NAME, file_format="pt2", progress_bar=False)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RoostError)  # reference type; CLI-printable
    with pytest.raises(FormatNotAvailableError, match=r"'onnx' not available .*: pt, safetensors$"):
        REGISTRY.get(NAME).check_format("onnx")  # what `roost download --format onnx` calls
    with pytest.raises(ValueError, match="new_size"):
        roost.load_pretrained_model(NAME, file_format="pts", new_size=(256, 256), progress_bar=False)
    with pytest.raises(ValueError, match="ptl format not supported"):
        roost.load_pretrained_model(NAME, file_format="ptl", progress_bar=False)
    assert served.state.requests == []


def test_progress_bar_runs(served: Server, roost_env: Path) -> None:
    net, _ = roost.load_pretrained_model(NAME, progress_bar=True)
    assert isinstance(net, torch.nn.Module)


def test_progress_goes_to_the_callback(
    served: Server, roost_env: Path, fixture_files: dict[str, bytes], capfd: pytest.CaptureFixture
) -> None:
    events: list[DownloadProgress] = []
    roost.load_pretrained_model(NAME, on_progress=events.append)
    size = len(fixture_files["pt"])
    assert len(events) > 2 and events[0].done == 0 and events[-1].done == size
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert {(e.name, e.url, e.total) for e in events} == {(f"{NAME}.pt", f"{served.url}/models/{NAME}.pt", size)}
    assert capfd.readouterr() == ("", "")  # the library draws nothing itself
    events.clear()
    roost.load_pretrained_model(NAME, on_progress=events.append)
    assert events == []  # cached: nothing to report


def test_verification_record_skips_rehash(
    tmp_path: Path, roost_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc" * 1000)
    digest = sha256_hex(path.read_bytes())
    settings = Settings.from_env()
    assert hub.verified_sha256(path, digest, settings) == digest
    monkeypatch.setattr(hub, "sha256sum", lambda p: pytest.fail("re-hashed a verified file"))
    assert hub.verified_sha256(path, digest, settings) == digest
    path.write_bytes(b"abd" * 1000)  # size kept, content and mtime changed
    os.utime(path, ns=(0, 0))
    monkeypatch.undo()
    assert hub.verified_sha256(path, digest, Settings.from_env()) != digest


def test_parse_hf_url() -> None:
    assert hub.parse_hf_url("https://huggingface.co/birder-project/x_y/resolve/main") == ("birder-project/x_y", "main")
    assert hub.parse_hf_url("https://example.com/birder-project/x/resolve/main") is None
    assert hub.parse_hf_url("https://f000.backblazeb2.com/file/birder/models") is None


# Hugging Face, against a loopback endpoint


@pytest.fixture
def hf_served(
    hf_server: Server, fixture_files: dict[str, bytes], roost_env: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Server:
    repo = "test-org/tiny-places"
    hf_server.state.files[f"/{repo}/resolve/main/{NAME}.pt"] = fixture_files["pt"]
    hf_server.state.files[f"/{repo}/resolve/{COMMIT}/{NAME}.pt"] = fixture_files["pt"]
    url = f"https://huggingface.co/{repo}/resolve/main"
    manifest = write_manifest(tmp_path / "hf.json", {NAME: entry(url, NETWORK, fixture_files)})
    monkeypatch.setenv("ROOST_MANIFEST", str(manifest))
    monkeypatch.setenv("HF_ENDPOINT", hf_server.url)
    return hf_server


def test_huggingface_download_goes_through_hf_cache(hf_served: Server, tmp_path: Path, roost_env: Path) -> None:
    _, info = roost.load_pretrained_model(NAME, progress_bar=False)
    assert info.signature["outputs"][0]["data_shape"] == [0, 6]
    assert any(r[0] == "GET" and r[1].endswith(f"/{NAME}.pt") for r in hf_served.state.requests)
    assert list((tmp_path / "hf-cache").glob(f"models--test-org--tiny-places/snapshots/*/{NAME}.pt"))
    assert _cache_files(roost_env) == []
    dst = tmp_path / "copy" / "w.pt"
    roost.load_pretrained_model(NAME, dst=dst, progress_bar=False)
    assert dst.read_bytes() == (tmp_path / "hf-cache").joinpath(
        next((tmp_path / "hf-cache").glob(f"models--*/snapshots/*/{NAME}.pt"))
    ).read_bytes()


def test_huggingface_progress_goes_to_the_callback(hf_served: Server, fixture_files: dict[str, bytes]) -> None:
    events: list[DownloadProgress] = []
    roost.load_pretrained_model(NAME, on_progress=events.append)
    size = len(fixture_files["pt"])
    assert events and events[-1].done == size and {e.total for e in events} == {size}
    assert {e.url for e in events} == {f"{hf_served.url}/test-org/tiny-places/resolve/main/{NAME}.pt"}


def test_huggingface_offline(hf_served: Server, monkeypatch: pytest.MonkeyPatch, roost_env: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        roost.load_pretrained_model(NAME, progress_bar=False)
    assert f"https://huggingface.co/test-org/tiny-places/resolve/main/{NAME}.pt" in str(err.value)
    assert str(roost_env / "weights" / f"{NAME}.pt") in str(err.value)
    assert hf_served.state.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    roost.load_pretrained_model(NAME, progress_bar=False)  # now cached in the HF cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    count = len(hf_served.state.requests)
    roost.load_pretrained_model(NAME, progress_bar=False)
    assert len(hf_served.state.requests) == count


def test_huggingface_checksum_mismatch(
    hf_server: Server, fixture_files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    roost_env: Path,
) -> None:
    repo = "test-org/tiny-places"
    hf_server.state.files[f"/{repo}/resolve/main/{NAME}.pt"] = fixture_files["pt"]
    bad = entry(f"https://huggingface.co/{repo}/resolve/main", NETWORK, {"pt": b""}, sha={"pt": "f" * 64})
    monkeypatch.setenv("ROOST_MANIFEST", str(write_manifest(tmp_path / "hf.json", {NAME: bad})))
    monkeypatch.setenv("HF_ENDPOINT", hf_server.url)
    with pytest.raises(ChecksumError, match="f" * 64):
        roost.load_pretrained_model(NAME, progress_bar=False)


def test_entry_file_url() -> None:
    e = PretrainedEntry.from_dict("w", entry("http://127.0.0.1:1/m/", NETWORK, {"pt": b"x"}))
    assert e.file_url("pt") == "http://127.0.0.1:1/m/w.pt"
