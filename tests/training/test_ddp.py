"""A 2-process gloo run under torchrun matches a 1-process run of the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from roost.training.state import STATE_FILE, load_state

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(folders, tmp_path) -> None:
    train = str(folders[0])
    _run([sys.executable, str(WORKER), train, str(tmp_path / "one"), "8"], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]  # free port
    _run([*torchrun, str(WORKER), train, str(tmp_path / "two"), "4"], tmp_path)
    for run, key in (("cls", "net"), ("capi", "student")):
        one = load_state(tmp_path / "one" / run / STATE_FILE)["task"][key]
        two = load_state(tmp_path / "two" / run / STATE_FILE)["task"][key]
        for name, tensor in one.items():
            torch.testing.assert_close(two[name], tensor, atol=2e-4, rtol=1e-3, msg=f"{run}: {name}")
    one_teacher = load_state(tmp_path / "one" / "capi" / STATE_FILE)["task"]["clustering"]
    two_teacher = load_state(tmp_path / "two" / "capi" / STATE_FILE)["task"]["clustering"]
    for name, tensor in one_teacher.items():
        torch.testing.assert_close(two_teacher[name], tensor, atol=2e-4, rtol=1e-3)
