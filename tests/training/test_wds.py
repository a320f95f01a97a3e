"""WebDataset ``.tar`` shards for classification: sample grouping, labels, and the same run as image folders."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from roost.errors import TrainingConfigError
from roost.training.classification import ClassifyConfig, train_classifier
from roost.training.data import load_sample, read_class_file, wds_samples
from roost.training.state import STATE_FILE, load_state
from tests.training.conftest import TINY


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_shards(folder: Path, out: Path, per_shard: int = 10) -> tuple[Path, Path]:
    """The class folders of ``folder`` as shards of ``per_shard`` samples (+ a class file), in folder order."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items = [(c, i, p) for i, c in enumerate(classes) for p in sorted((folder / c).iterdir())]
    out.mkdir(parents=True)
    for s in range(0, len(items), per_shard):
        with tarfile.open(out / f"shard-{s // per_shard:03d}.tar", "w") as tar:
            for c, i, p in items[s : s + per_shard]:
                key = f"{c}/{p.stem}"
                _add(tar, f"{key}.png", p.read_bytes())
                _add(tar, f"{key}.cls", f"{i}\n".encode())
                _add(tar, f"{key}.txt", b"ignored")
    class_file = out.parent / f"{out.name}_classes.txt"
    class_file.write_text("\n".join(classes) + "\n")
    return out, class_file


def test_wds_samples_group_by_key(folders, tmp_path) -> None:
    shards, class_file = make_shards(folders[0], tmp_path / "train")
    with tarfile.open(shards / "shard-999.tar", "w") as tar:  # no label: skipped; label only: skipped
        _add(tar, "orphan.jpg", b"x")
        _add(tar, "lonely.cls", b"1")
    class_to_idx = read_class_file(class_file)
    samples = wds_samples([shards], len(class_to_idx))
    assert len(samples) == 32 and class_to_idx == {"blue": 0, "green": 1, "red": 2, "yellow": 3}
    assert [label for _, label in samples] == [i // 8 for i in range(32)]
    member, _ = samples[9]
    assert member.name == "green/1.png"
    assert load_sample(member).tobytes() == load_sample(folders[0] / "green" / "1.png").tobytes()
    with pytest.raises(TrainingConfigError, match="outside"):
        wds_samples([shards], 3)


def test_wds_run_equals_folder_run(folders, tmp_path) -> None:
    train, class_file = make_shards(folders[0], tmp_path / "train")
    val, _ = make_shards(folders[1], tmp_path / "val")
    common = dict(network="rope_vit_reg4_b14", model_config=TINY, size=28, epochs=2, batch_size=8, lr=3e-3)
    train_classifier(ClassifyConfig(data_path=[str(folders[0])], val_path=[str(folders[1])],
                                    out_dir=str(tmp_path / "dirs"), **common))
    history = train_classifier(ClassifyConfig(data_path=[str(train)], val_path=[str(val)], wds=True,
                                              wds_class_file=str(class_file), out_dir=str(tmp_path / "wds"), **common))
    a, b = (load_state(tmp_path / run / STATE_FILE)["task"]["net"] for run in ("dirs", "wds"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert 0 <= history[-1]["val_top1"] <= 1


def test_wds_needs_a_class_file(tmp_path) -> None:
    with pytest.raises(TrainingConfigError, match="wds_class_file"):
        ClassifyConfig(network="rope_vit_reg4_b14", wds=True)
