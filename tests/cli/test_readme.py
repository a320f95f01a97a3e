"""The README's main job, run as written: ``roost orient examples/photos`` from the checkout's root.

Our machines cannot reach the Hugging Face hub, so a loopback server plays the hub (``HF_ENDPOINT``) and
serves the tiny reference-written rotnet checkpoint where the published file lives
(``birder-project/<name>/resolve/main/<name>.pt``). The published manifest entry is kept, URL included;
a user manifest (``ROOST_MANIFEST``) only pins the served file's sha256 and size, as it would for a
private mirror. ``ROOST_HOME`` and the Hugging Face cache are fresh folders, so the first run downloads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from roost.jobs.orient import ROTNET
from tests.conftest import SHARED
from tests.weights.conftest import COMMIT, Server, hf_server, sha256_hex  # noqa: F401 (hf_server: fixture)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "examples" / "photos"
TINY_ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
REPO = f"birder-project/{ROTNET}"
FENCED_BASH = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def main_job() -> list[str]:
    """The ``roost ...`` part of the README's first bash command (install steps joined by ``&&`` dropped)."""
    block = FENCED_BASH.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md has no ```bash block"
    steps = [step.strip() for step in block[1].strip().split("&&")]
    roost_steps = [step for step in steps if step.startswith("roost ")]
    assert len(roost_steps) == 1, f"expected one roost command in the first block, got {steps}"
    return shlex.split(roost_steps[0])


def roost_executable() -> str:
    """The console script ``pip install -e .`` put beside this interpreter (or on PATH)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("roost", path=path)
    assert found is not None, "the roost console script is not installed (python -m pip install -e .)"
    return found


def published_entry() -> dict:
    manifest = json.loads(resources.files("roost.weights").joinpath("manifest.json").read_text(encoding="utf-8"))
    return manifest[ROTNET]


@pytest.fixture
def hub(hf_server: Server) -> Server:  # noqa: F811 (the imported fixture)
    """The loopback hub, serving the tiny checkpoint as the published rotnet file."""
    if not TINY_ROTNET.exists():
        pytest.skip("shared fixtures not present")
    data = TINY_ROTNET.read_bytes()
    for revision in ("main", COMMIT):
        hf_server.state.files[f"/{REPO}/resolve/{revision}/{ROTNET}.pt"] = data
    return hf_server


@pytest.fixture
def env(hub: Server, tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh machine whose hub is ``hub``, with the mirror's file pinned."""
    entry = published_entry()
    size = round(TINY_ROTNET.stat().st_size / 1024**2, 1)
    entry["formats"] = {"pt": {"file_size": size, "sha256": sha256_hex(TINY_ROTNET.read_bytes())}}
    manifest = tmp_path / "mirror.json"
    manifest.write_text(json.dumps({ROTNET: entry}))
    drop = {"ROOST_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "ROOST_DEVICE", "COLUMNS", "LINES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {
        "ROOST_HOME": str(tmp_path / "roost-home"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_ENDPOINT": hub.url,
        "ROOST_MANIFEST": str(manifest),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }


def run_main_job(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = main_job()
    assert command[0] == "roost"
    return subprocess.run(
        [roost_executable(), *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The cells of the table's body rows, keyed by the path shown; cells wrapped over lines are joined.

    Every row here has a rotation, so a line with an empty rotation cell continues the row above.
    """
    rows: list[list[str]] = []
    for line in stdout.splitlines():
        if not line.startswith("│"):  # the frame and the header (drawn with ┃) are not rows
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[1] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return {row[0].replace(" ", ""): row for row in rows}


def test_readme_main_job_downloads_the_model_then_reports_every_sample(hub: Server, env: dict[str, str]) -> None:
    first = run_main_job(env)
    assert first.returncode == 0, first.stdout + first.stderr
    model_gets = [r for r in hub.state.gets() if re.fullmatch(f"/{REPO}/resolve/[^/]+/{ROTNET}\\.pt", r[1])]
    assert model_gets, f"the weights were not downloaded: {hub.state.requests}"
    cached = list(Path(env["HF_HOME"]).glob(f"hub/models--birder-project--{ROTNET}/snapshots/*/{ROTNET}.pt"))
    assert [p.read_bytes() for p in cached] == [TINY_ROTNET.read_bytes()]
    assert f"download {ROTNET}.pt" in first.stderr  # the progress bar's final state (stderr is not a terminal)

    rows = table_rows(first.stdout)
    assert sorted(rows) == [f"examples/photos/{p.name}" for p in sorted(SAMPLES.glob("*.jpg"))], first.stdout
    for _, rotation, confidence, action, error in rows.values():
        assert rotation in {"0", "90", "180", "270"} and 0.25 <= float(confidence) <= 1.0
        assert action and not error

    requests = len(hub.state.requests)
    second = run_main_job(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert hub.state.requests[requests:] == [], "the second run went to the hub again"
    assert f"download {ROTNET}.pt" not in second.stderr
    assert table_rows(second.stdout) == rows
