"""The ``roost`` command line, run through typer's test runner."""

from __future__ import annotations

from typer.testing import CliRunner

from roost.cli.app import app

runner = CliRunner()


def test_models_filters_names() -> None:
    result = runner.invoke(app, ["models", "*so150m_p14_swiglu_rms_a*"])
    assert result.exit_code == 0
    names = ["rope_vit_reg8_so150m_p14_swiglu_rms_ap", "rope_vit_reg8_so150m_p14_swiglu_rms_avg"]
    assert result.stdout.split() == names


def test_info_prints_shapes() -> None:
    result = runner.invoke(app, ["info", "rope_vit_t14", "--size", "56", "-c", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "(1, 3)" in result.stdout and "(1, 192, 4, 4)" in result.stdout and "5.5M" in result.stdout


def test_info_unknown_name_suggests() -> None:
    result = runner.invoke(app, ["info", "rope_vit_t14_swiglo"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Unknown network 'rope_vit_t14_swiglo'" in result.stderr and "rope_vit_t14" in result.stderr


def test_every_command_has_help_with_examples() -> None:
    for command in ("info", "models"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0 and "Examples" in result.stdout
