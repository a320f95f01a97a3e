"""The loop's run-folder rules, its per-epoch train means, and several data roots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from roost.errors import TrainingConfigError
from roost.training import engine
from roost.training.classification import ClassifyConfig, labelled_samples, train_classifier
from roost.training.state import STATE_FILE
from tests.training.conftest import TINY, make_folder


def _cfg(folders: tuple[Path, Path], out: Path, **kw) -> ClassifyConfig:
    base = dict(
        network="rope_vit_reg4_b14", model_config=TINY, size=28, data_path=[str(folders[0])],
        val_path=[str(folders[1])], out_dir=str(out), epochs=2, batch_size=8, aug_level=0,
    )
    return ClassifyConfig(**{**base, **kw})


def _listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_fresh_run_refuses_a_used_folder(folders, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine
    train_classifier(_cfg(folders, out, epochs=1))
    before = _listing(out)
    with pytest.raises(TrainingConfigError, match="already holds a run"):
        train_classifier(_cfg(folders, out, epochs=1))
    assert _listing(out) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingConfigError, match="already holds a run"):
        train_classifier(_cfg(folders, tmp_path / "file"))


def test_overwrite_starts_afresh_and_drops_the_old_state(folders, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    train_classifier(_cfg(folders, out, epochs=2, stop_after_steps=3))
    assert (out / STATE_FILE).is_file()

    def crash(*args: object) -> bool:
        raise RuntimeError("killed")

    monkeypatch.setattr(engine, "_train_epoch", crash)
    with pytest.raises(RuntimeError, match="killed"):  # dies before its first save
        train_classifier(_cfg(folders, out, epochs=1, overwrite=True))
    assert not (out / STATE_FILE).exists()  # so a later --resume cannot pick up the old run
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    monkeypatch.undo()
    train_classifier(_cfg(folders, out, epochs=1, overwrite=True, stop_after_steps=1))
    with open(out / "log.csv") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["1"]


def test_history_holds_the_epoch_means_of_the_logged_losses(folders, tmp_path) -> None:
    history = train_classifier(_cfg(folders, tmp_path, epochs=2, batch_size=4))  # 32 images: 8 steps per epoch
    with open(tmp_path / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    for epoch, entry in enumerate(history, start=1):
        losses = [float(r["loss"]) for r in rows if int(r["epoch"]) == epoch]
        assert len(losses) == 8
        assert entry["train_loss"] == pytest.approx(sum(losses) / 8, rel=1e-5)
        assert {"train_top1", "val_loss", "val_top1"} <= set(entry)


def test_resumed_epoch_means_cover_the_whole_epoch(folders, tmp_path) -> None:
    whole = train_classifier(_cfg(folders, tmp_path / "a", batch_size=4))
    train_classifier(_cfg(folders, tmp_path / "b", batch_size=4, stop_after_steps=3, save_every_steps=1))
    resumed = train_classifier(_cfg(folders, tmp_path / "b", batch_size=4, resume=True))
    assert resumed[0]["train_loss"] == pytest.approx(whole[0]["train_loss"], rel=1e-6)


def test_every_data_root_is_used(tmp_path) -> None:
    a = make_folder(tmp_path / "a", 2, 0)
    b = make_folder(tmp_path / "b", 3, 1)
    (b / "purple").mkdir()
    make_folder(tmp_path / "extra", 1, 2)
    (tmp_path / "extra" / "red").rename(b / "purple" / "imgs")
    cfg = ClassifyConfig(network="rope_vit_reg4_b14", data_path=[str(a), str(b)], val_path=[str(b)])
    train, val, class_to_idx = labelled_samples(cfg)
    assert len(train) == 4 * 2 + 4 * 3 + 1
    assert list(class_to_idx) == ["blue", "green", "purple", "red", "yellow"]
    assert val is not None and len(val) == 4 * 3 + 1
    with pytest.raises(TrainingConfigError, match="differ from the training classes"):
        labelled_samples(ClassifyConfig(network="rope_vit_reg4_b14", data_path=[str(a), str(b)], val_path=[str(a)]))
