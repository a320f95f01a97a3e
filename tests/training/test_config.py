"""Config validation and the TOML / ``key=value`` mapping: every bad value is one TrainingConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import TrainingConfigError
from roost.training.capi import CapiConfig
from roost.training.classification import ClassifyConfig
from roost.training.config import Range, build_config, parse_overrides
from roost.training.rotnet import RotNetConfig

NET = {"network": "rope_vit_reg4_b14"}


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (ClassifyConfig, {"lr": -0.1}, "lr must be >= 0, got -0.1"),
        (ClassifyConfig, {"batch_size": 0}, "batch_size must be >= 1, got 0"),
        (ClassifyConfig, {"epochs": 0}, "epochs must be >= 1, got 0"),
        (ClassifyConfig, {"grad_accum": 0}, "grad_accum must be >= 1"),
        (ClassifyConfig, {"log_every": 0}, "log_every must be >= 1"),
        (ClassifyConfig, {"betas": (0.9, 1.0)}, r"betas must be in \[0, 1\), got \(0.9, 1.0\)"),
        (ClassifyConfig, {"wd": -1e-4}, "wd must be >= 0"),
        (ClassifyConfig, {"cosine_fraction": 0.0}, r"cosine_fraction must be in \(0, 1\]"),
        (ClassifyConfig, {"clip_grad_norm": 0.0}, "clip_grad_norm must be > 0"),
        (ClassifyConfig, {"aug_level": 11}, r"aug_level must be in \[0, 10\]"),
        (ClassifyConfig, {"warmup_epochs": 11.0}, r"warmup_epochs must be in \[0, epochs=10\]"),
        (ClassifyConfig, {"label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        (ClassifyConfig, {"ema_steps": 0}, "ema_steps must be >= 1"),
        (ClassifyConfig, {"top_k": 0}, "top_k must be >= 1"),
        (ClassifyConfig, {"resume": True, "overwrite": True}, "give one"),
        (RotNetConfig, {"rotation_prob": 0.0}, r"rotation_prob must be in \(0, 1\]"),
        (RotNetConfig, {"lr": -1.0}, "lr must be >= 0"),  # the shared checks run for subclasses too
        (CapiConfig, {"decoder_heads": 0}, "decoder_heads must be >= 1"),
        (CapiConfig, {"mask_ratio": 1.0}, r"mask_ratio must be in \(0, 1\)"),
        (CapiConfig, {"batch_size": -2}, "batch_size must be >= 1"),
    ],
)
def test_out_of_range_values_are_named(cls: type, values: dict, message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        cls(**NET, **values)


def test_zero_values_that_make_sense_are_kept() -> None:
    cfg = build_config(ClassifyConfig, None, {**NET, "lr": 0, "wd": 0, "warmup_epochs": 0, "workers": 0})
    assert (cfg.lr, cfg.wd, cfg.warmup_epochs, cfg.workers) == (0.0, 0.0, 0.0, 0)
    assert isinstance(cfg.lr, float)


def test_single_paths_become_lists() -> None:
    cfg = ClassifyConfig(**NET, data_path="a", val_path="b")  # type: ignore[arg-type]
    assert (cfg.data_path, cfg.val_path) == (["a"], ["b"])
    assert build_config(CapiConfig, None, {**NET, "data_path": "x"}).data_path == ["x"]
    assert ClassifyConfig(**NET, val_path=[]).val_path == []


@pytest.mark.parametrize(
    "item", ["epochs=abc", "lr=fast", "betas=[0.9]", "opt=adam", "linear_probe=[1]", "nosuch=1"]
)
def test_bad_overrides_are_config_errors(item: str) -> None:
    with pytest.raises(TrainingConfigError, match=r"does not fit|unknown option"):
        build_config(ClassifyConfig, None, {**NET, **parse_overrides([item])})


def test_toml_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "run.toml"
    good.write_text('[train]\nnetwork = "rope_vit_reg4_b14"\nepochs = 3\nbetas = [0.9, 0.95]\n')
    cfg = build_config(ClassifyConfig, good, {"epochs": 5})
    assert (cfg.epochs, cfg.betas) == (5, (0.9, 0.95))
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(TrainingConfigError, match="not valid TOML"):
        build_config(ClassifyConfig, bad)


def test_range_text_and_bounds() -> None:
    half_open = Range(0, 1, high_open=True)
    assert 0 in half_open and 1 not in half_open and -1e-9 not in half_open
    assert str(half_open) == "in [0, 1)" and str(Range(0, low_open=True)) == "> 0"
