"""Loopback servers and an isolated environment for the weights tests.

``file_server`` is a real ``ThreadingHTTPServer`` on 127.0.0.1 that serves byte strings by path, can
honour or ignore ``Range``, and can cut its next responses short. ``hf_server`` answers the Hugging Face
hub's ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` with the headers huggingface_hub reads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from roost.weights import manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    truncate_next: int = 0  # how many coming GETs send only half the body, then close
    hf: bool = False
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def gets(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] == "GET"]


class Handler(BaseHTTPRequestHandler):
    state: ServerState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        state = self.state
        state.requests.append((self.command, self.path, dict(self.headers)))
        data = state.files.get(self.path.split("?")[0])
        if data is None:
            self._send_empty(404)
            return
        start = self._range_start() if state.honour_range else None
        payload = data[start:] if start is not None else data
        if start is not None and start >= len(data):
            self._send_empty(416)
            return
        self.send_response(206 if start is not None else 200)
        self.send_header("Content-Length", str(len(payload)))
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if state.hf:
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.end_headers()
        if body:
            self._write_body(payload)

    def _write_body(self, payload: bytes) -> None:
        if self.state.truncate_next > 0:
            self.state.truncate_next -= 1
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _range_start(self) -> int | None:
        value = self.headers.get("Range", "")
        if not value.startswith("bytes=") or not value.endswith("-"):
            return None
        return int(value[len("bytes=") : -1])

    def _send_empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        if self.state.hf:
            self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()


@dataclass
class Server:
    url: str
    state: ServerState


def _serve(hf: bool) -> Iterator[Server]:
    state = ServerState(hf=hf)
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", state)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def file_server() -> Iterator[Server]:
    yield from _serve(hf=False)


@pytest.fixture
def hf_server() -> Iterator[Server]:
    yield from _serve(hf=True)


@pytest.fixture
def roost_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ROOST_HOME and HF cache, online, with no user registrations; returns ROOST_HOME."""
    home = tmp_path / "roost-home"
    for name in ("ROOST_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ROOST_MANIFEST", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROOST_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(manifest.REGISTRY, "_registered", {})
    return home


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def entry(url: str, network: str, formats: dict[str, bytes], *, sha: dict[str, str] | None = None) -> dict:
    """A manifest entry in the packaged JSON shape for files served at ``url``."""
    sha = sha or {}
    return {
        "url": url,
        "description": "test weights",
        "resolution": [224, 224],
        "formats": {
            fmt: {"file_size": round(len(data) / 1024**2, 1), "sha256": sha.get(fmt, sha256_hex(data))}
            for fmt, data in formats.items()
        },
        "net": {"network": network, "tag": "tiny"},
        "task": "image_classification",
    }
