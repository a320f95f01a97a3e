"""Every bad argument of a batch command is one plain line on stderr and exit status 2, with nothing written;
the conventions (``--version``, ``-h``, ``python -m roost``, examples that parse) hold for every command."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from roost.cli.app import app
from tests.conftest import SHARED

CKPT = SHARED / "fixtures" / "checkpoints"
ROTNET = CKPT / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = CKPT / "rope_vit_reg4_b14_tiny-places.safetensors"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "80"})


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "a.png")
    return folder


def refused(result, *words: str) -> str:
    """The one error line of a refused command (after checking the status and that there is no traceback)."""
    assert result.exit_code == 2, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error = next(line for line in lines if line.lower().startswith("error"))
    for word in words:
        assert word in error, error
    return error


BAD = [
    (["--threshold", "-1"], "--threshold"),
    (["--threshold", "2"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--batch-size", "0"], "--batch-size"),
    (["--workers", "-1"], "--workers"),
    (["--device", "cuda"], "not available"),
    (["--device", "gpu7"], "not a torch device"),
    (["--dtype", "fp8"], "--dtype"),
    (["--backend", "ort_int8"], "--backend"),
    (["--backend", "ort", "--dtype", "bf16"], "fp32"),
    (["--engine", "spark"], "--engine"),
    (["--fix", "rotate"], "--fix"),
    (["--fix", "copy"], "--output"),
]


@pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")
@pytest.mark.parametrize(("args", "word"), BAD)
def test_bad_orient_options(photos: Path, tmp_path: Path, args: list[str], word: str) -> None:
    report = tmp_path / "r.csv"
    result = invoke("orient", str(photos), "-m", str(ROTNET), "--report", str(report), *args)
    refused(result, word)
    assert not report.exists()


@pytest.mark.skipif(not PLACES.exists(), reason="shared fixtures not present")
def test_bad_topk(photos: Path) -> None:
    refused(invoke("predict", str(photos), "-m", str(PLACES), "--topk", "0"), "--topk")


@pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")
def test_reports_that_cannot_be_written(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    refused(invoke("orient", str(photos), "-m", str(ROTNET), "--report", str(tmp_path / "folder.csv")), "folder")
    (tmp_path / "afile").write_text("x")
    refused(invoke("orient", str(photos), "-m", str(ROTNET), "--report", str(tmp_path / "afile" / "r.csv")))
    refused(invoke("orient", str(photos), "-m", str(ROTNET), "--report", str(tmp_path / "r.xlsx")), ".csv")


def test_unknown_model_and_missing_input(photos: Path) -> None:
    refused(invoke("orient", str(photos), "-m", "rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet-capj"), "rotnet-capi")
    name = "[bold]odd[/bold] " + "x" * 200 + ".jpg"  # markup and a long path are printed as they are, unwrapped
    error = refused(invoke("orient", name))
    assert error == f"error: no such file or folder: {name}"


def test_exported_programs_are_refused_with_what_to_do(photos: Path, tmp_path: Path) -> None:
    for suffix in (".pt2", ".pts", ".onnx"):
        (tmp_path / f"model{suffix}").write_bytes(b"not read")
        refused(invoke("orient", str(photos), "-m", str(tmp_path / f"model{suffix}")), ".pt or .safetensors")


def test_download_format_the_weights_do_not_have() -> None:
    error = refused(invoke("download", "rope_vit_reg4_b14_capi-places365", "--format", "onnx"))
    assert "onnx" in error and "pt" in error


def test_version_help_and_module() -> None:
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("roost ")
    assert invoke("orient", "-h").exit_code == 0
    module = subprocess.run([sys.executable, "-m", "roost", "--version"], capture_output=True, text=True, check=False)
    assert module.returncode == 0 and module.stdout == version.stdout


def _name(command: typer.models.CommandInfo) -> str:
    return command.name or getattr(command.callback, "__name__", "")


def _commands() -> list[list[str]]:
    top = [[_name(c)] for c in app.registered_commands]
    return top + [[g.name or "", _name(c)] for g in app.registered_groups for c in g.typer_instance.registered_commands]


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_examples_that_parse(command: list[str]) -> None:
    """Each example in --help names only options the command has (parsed with the example's own arguments)."""
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "Examples" in result.stdout, result.output
    lines = result.stdout.split("Examples")[1].splitlines()
    examples = [line.strip() for line in lines if line.strip().startswith("roost")]
    assert examples, result.stdout
    for example in examples:
        args = shlex.split(example)[1:]
        args = [a for a in args if "=" not in a or a.startswith("-")]
        parsed = runner.invoke(app, [*args, "--help"], terminal_width=200)
        assert parsed.exit_code == 0, f"{example}: {parsed.output}"
