"""``roost convert pe-spatial`` and ``roost export``: options in, one library call, a one-line result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roost.cli.common import user_errors

app = typer.Typer(help="Convert foreign checkpoints to Birder-format files.", no_args_is_help=True)


@app.command("pe-spatial")
def pe_spatial(
    src: Annotated[Path, typer.Argument(help="Meta PE-Spatial .pt (any wrapper/prefix) or timm state dict.")],
    dst: Annotated[Path, typer.Argument(help="Output .pt or .safetensors.")],
    size: Annotated[
        str | None, typer.Option("--size", help="T, S or B (default: from the patch-embedding width).")
    ] = None,
    interpolation: Annotated[
        str, typer.Option("--interpolation", help="Pos-embedding resize at other sizes: bilinear (Meta) or bicubic.")
    ] = "bilinear",
) -> None:
    """Convert Meta's PE-Spatial (or timm's vit_pe_spatial_*) to rope_i_vit_reg1_{t,s,b}16_pn_npn_avg_c1.

    Examples:

        roost convert pe-spatial PE-Spatial-S16-512.pt pe_spatial_s16.safetensors

        roost convert pe-spatial timm_model.safetensors out.pt --size S
    """
    from roost.convert.pe_spatial import convert_pe_spatial

    if interpolation not in ("bilinear", "bicubic"):
        raise typer.BadParameter(f"--interpolation must be bilinear or bicubic, not {interpolation!r}")
    with user_errors():
        ckpt = convert_pe_spatial(src, dst, size=size.lower() if size else None,  # type: ignore[arg-type]  # checked there
                                   interpolation=interpolation)
    typer.echo(f"wrote {dst} ({ckpt.network}, {len(ckpt.state)} tensors, 512 px, {interpolation} pos-embed)")


def export(
    model: Annotated[str, typer.Argument(help="Pretrained weights name or checkpoint file.")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, pt2, torchscript or safetensors.")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output file (default: <model>.<ext>).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Any batch size (ONNX: always).")] = False,
    dynamic_size: Annotated[
        bool, typer.Option("--dynamic-size", help="Any H/W divisible by the patch (onnx, pt2).")
    ] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="fp32, fp16 or bf16.")] = "fp32",
) -> None:
    """Export a model and check the export against the eager model on the spot (max abs error printed).

    Examples:

        roost export rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet-capi --format onnx

        roost export model.pt --format pt2 --dynamic-batch --dynamic-size -o model.pt2
    """
    from roost.convert.export import SUFFIXES, ExportOptions, export_model

    if format not in SUFFIXES:
        raise typer.BadParameter(f"--format must be one of {', '.join(SUFFIXES)}, not {format!r}")
    if dtype not in ("fp32", "fp16", "bf16"):
        raise typer.BadParameter(f"--dtype must be fp32, fp16 or bf16, not {dtype!r}")
    options = ExportOptions(format, output, dynamic_batch, dynamic_size, dtype)  # type: ignore[arg-type]
    with user_errors():
        result = export_model(model, options)
    shapes = ", ".join("x".join(map(str, s)) for s in result.checked_shapes)
    typer.echo(f"wrote {result.path}" + (f" and {result.sidecar}" if result.sidecar else ""))
    typer.echo(f"max abs error vs eager: {result.max_abs_error:.3g} (inputs {shapes})")
