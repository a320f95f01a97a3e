"""``roost train classify | rotnet | capi``: options -> the recipe's config dataclass -> one library call.

Every option of the config can come from a TOML file (``--config run.toml``) and/or ``--set key=value``;
the common ones also have flags. The resolved config is printed at start; rank 0 shows a progress bar.
Under ``torchrun --nproc_per_node N -m roost.cli.app train …`` the run is distributed (gloo on CPU, NCCL on GPU).
A fresh run needs a new or empty ``--out-dir``; ``--resume`` continues the run there, ``--overwrite`` restarts it.
Invalid options (``--lr -1``, ``--batch-size 0``, ``--epochs 0``) stop with one line and exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from roost.cli.common import user_errors

if TYPE_CHECKING:
    from roost.training.config import RunConfig
    from roost.training.engine import Progress as ProgressFn

C = TypeVar("C", bound="RunConfig")

app = typer.Typer(help="Train: supervised fine-tuning / linear probes, RotNet, CAPI pretraining.", no_args_is_help=True)

# Every flag defaults to None ("not given"): only given flags override the TOML file and the config defaults.
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file with any config field.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="key=value override (TOML value), repeatable.")]
NetworkOpt = Annotated[str | None, typer.Option("--network", "-n", help="Network name for a fresh model.")]
InitOpt = Annotated[str | None, typer.Option("--init", help="Start from a checkpoint file or pretrained name.")]
DataOpt = Annotated[list[str] | None, typer.Option("--data-path", help="Training images (repeatable: all are used).")]
ValOpt = Annotated[list[str] | None, typer.Option("--val-path", help="Held-out images (repeatable: all are used).")]
OutOpt = Annotated[
    str | None, typer.Option("--out-dir", "-o", help="Run folder: checkpoints, state, logs. Must be new or empty.")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs to train, >= 1.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", "-b", help="Images per step and process, >= 1.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Base learning rate, >= 0 (0: weights stay as they are).")]
SizeOpt = Annotated[int | None, typer.Option("--size", help="Training resolution (a multiple of the patch size).")]
ResumeOpt = Annotated[bool | None, typer.Option("--resume", help="Continue the run in --out-dir from its saved state.")]
OverwriteOpt = Annotated[
    bool | None, typer.Option("--overwrite", help="Start afresh in a --out-dir that holds an earlier run.")
]


def _overrides(sets: list[str] | None, **flags: Any) -> dict[str, Any]:
    """The given flags (None: not given) updated with the ``--set`` overrides."""
    from roost.training.config import parse_overrides

    values = {k: v for k, v in flags.items() if v is not None}
    values.update(parse_overrides(sets or []))
    return values


def _run(cls: type[C], train: Callable[[C, ProgressFn], list[dict[str, Any]]], config: Path | None,
         overrides: dict[str, Any]) -> None:
    from roost.training.config import build_config
    from roost.training.engine import check_out_dir
    from roost.training.state import teardown_distributed

    console = Console()
    main = os.environ.get("RANK", "0") == "0"
    with user_errors():
        cfg = build_config(cls, config, overrides)
        check_out_dir(cfg)  # before the config is shown: a refused run prints one line
        if main:
            console.print(f"[bold]{cls.__name__}[/bold]", cfg.to_json())
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), console=console, disable=not main,
        ) as bar:
            task = bar.add_task("train", total=None, info="")
            try:
                train(cfg, lambda e: _render(bar, task, console, e))
            finally:
                teardown_distributed()


def _metrics(event: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in event.items() if isinstance(v, float))


def _render(bar: Progress, task: TaskID, console: Console, event: dict[str, Any]) -> None:
    if event["event"] == "start":
        console.print(
            f"{event['images']} training images, {event['batches']} batches per epoch, {event['epochs']} epochs"
            + (f" (resuming after step {event['step']})" if event["step"] else "")
        )
        bar.update(task, total=event["total"], completed=event["step"])
    elif event["event"] == "step":
        bar.update(task, completed=event["step"], description=f"epoch {event['epoch']}", info=_metrics(event))
    elif event["event"] == "epoch":
        console.print(f"epoch {event['epoch']}/{event['epochs']} (step {event['step']}): {_metrics(event)}")


@app.command("classify")
def classify(
    config: ConfigOpt = None, network: NetworkOpt = None, init: InitOpt = None, data_path: DataOpt = None,
    val_path: ValOpt = None, out_dir: OutOpt = None, epochs: EpochsOpt = None, batch_size: BatchOpt = None,
    lr: LrOpt = None, size: SizeOpt = None, resume: ResumeOpt = None, overwrite: OverwriteOpt = None,
    linear_probe: Annotated[
        bool | None, typer.Option("--linear-probe/--no-linear-probe", help="Train only the head on a frozen body.")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune or linear-probe on image folders (one sub-folder per class; all --data-path roots are merged).

    Each epoch prints its mean train loss and the validation loss and accuracy.

    \b
    Examples:
      roost train classify --init runs/rope_vit_reg4_b14_capi_400.pt --data-path train/ --val-path val/ --linear-probe
      roost train classify --network rope_vit_reg4_b14 --set mixup_alpha=0.8 --data-path a/ --data-path b/ --epochs 30
      roost train classify --config run.toml --out-dir runs/cls --resume
    """
    from roost.training.classification import ClassifyConfig, train_classifier

    flags = _overrides(
        set_, network=network, init=init, data_path=data_path, val_path=val_path, out_dir=out_dir, epochs=epochs,
        batch_size=batch_size, lr=lr, size=size, resume=resume, overwrite=overwrite, linear_probe=linear_probe,
    )
    _run(ClassifyConfig, train_classifier, config, flags)


@app.command("rotnet")
def rotnet(
    config: ConfigOpt = None, network: NetworkOpt = None, init: InitOpt = None, data_path: DataOpt = None,
    val_path: ValOpt = None, out_dir: OutOpt = None, epochs: EpochsOpt = None, batch_size: BatchOpt = None,
    lr: LrOpt = None, size: SizeOpt = None, resume: ResumeOpt = None, overwrite: OverwriteOpt = None,
    rotation_prob: Annotated[
        float | None, typer.Option("--rotation-prob", help="Chance that an image is rotated, in (0, 1].")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Train a 4-way orientation head on a frozen body (e.g. a CAPI encoder file).

    \b
    Examples:
      roost train rotnet --network rope_vit_reg4_b14 --init runs/capi/rope_vit_reg4_b14_capi_10.pt --data-path photos/
      roost train rotnet --init runs/rope_vit_reg4_b14_capi_10.pt --data-path a/ --data-path b/ --val-path held_out/
    """
    from roost.training.rotnet import RotNetConfig, train_rotnet

    flags = _overrides(
        set_, network=network, init=init, data_path=data_path, val_path=val_path, out_dir=out_dir, epochs=epochs,
        batch_size=batch_size, lr=lr, size=size, resume=resume, overwrite=overwrite, rotation_prob=rotation_prob,
    )
    _run(RotNetConfig, train_rotnet, config, flags)


@app.command("capi")
def capi(
    config: ConfigOpt = None, network: NetworkOpt = None, init: InitOpt = None, data_path: DataOpt = None,
    out_dir: OutOpt = None, epochs: EpochsOpt = None, batch_size: BatchOpt = None, lr: LrOpt = None,
    size: SizeOpt = None, resume: ResumeOpt = None, overwrite: OverwriteOpt = None, set_: SetOpt = None,
) -> None:
    """CAPI self-supervised pretraining; writes the teacher encoder as <network>_capi_<epoch>.pt per epoch.

    \b
    Examples:
      roost train capi --network rope_vit_reg4_b14 --set warmup_epochs=40 --data-path images/ --epochs 400
      roost train capi --network rope_vit_reg4_b14 --data-path images/ --out-dir runs/capi --overwrite
    """
    from roost.training.capi import CapiConfig, train_capi

    flags = _overrides(
        set_, network=network, init=init, data_path=data_path, out_dir=out_dir, epochs=epochs,
        batch_size=batch_size, lr=lr, size=size, resume=resume, overwrite=overwrite,
    )
    _run(CapiConfig, train_capi, config, flags)
