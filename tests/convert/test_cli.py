"""The convert/export commands, mounted here the way app.py mounts them."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from roost.cli import convert
from tests.formula import formula_tensor

app = typer.Typer()
app.add_typer(convert.app, name="convert")
app.command("export")(convert.export)


def test_convert_pe_spatial_command(tmp_path, shared_dir):
    keys = json.loads((shared_dir / "fixtures" / "pe_spatial" / "meta_state_dict.json").read_text())
    state = {k: formula_tensor(k, tuple(s)) for k, s in keys}
    src, dst = tmp_path / "pe.pt", tmp_path / "pe.safetensors"
    torch.save({"state_dict": state}, src)
    result = CliRunner().invoke(app, ["convert", "pe-spatial", str(src), str(dst), "--size", "S"])
    assert result.exit_code == 0, result.output
    assert "rope_i_vit_reg1_s16_pn_npn_avg_c1" in result.output and dst.is_file()

    torch.save({"state_dict": {**state, "proj": torch.zeros(384, 512)}}, src)
    result = CliRunner().invoke(app, ["convert", "pe-spatial", str(src), str(dst)])
    assert result.exit_code == 2 and "proj" in result.output


def test_export_command_prints_error(tmp_path, shared_dir):
    pytest.importorskip("onnxruntime")
    ckpt = shared_dir / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
    out = tmp_path / "m.pts"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "torchscript", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs error vs eager" in result.output and out.is_file()
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "tflite"])
    assert result.exit_code != 0
