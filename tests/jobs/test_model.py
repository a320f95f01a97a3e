"""The job's model: auto precision per device, fp32 exact, bf16-held within the fidelity bar on real photos,
compiling with a fallback, decode workers sized from the machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import roost
from roost.cli.app import app
from roost.data.datasets import Batch
from roost.data.transforms import inference_preset
from roost.errors import JobOptionError
from roost.jobs import base as base_module
from roost.jobs import model as model_module
from roost.jobs.base import Backend, Compile, Dtype, Note, RunOptions, default_workers
from roost.jobs.model import JobModel, cpu_bf16_feature, hold_bf16, resolve_dtype, use_inductor_cache
from tests.conftest import SHARED

CKPT = SHARED / "fixtures" / "checkpoints"
ROTNET = CKPT / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = CKPT / "rope_vit_reg4_b14_tiny-places.safetensors"
PE = CKPT / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
CLASSIFIERS = [ROTNET, PLACES]
PHOTOS = ("kite", "dune", "garden", "wood", "aqua", "storm")
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")


def rotated_photos(names: tuple[str, ...] = PHOTOS) -> list[Image.Image]:
    """Real photos, each upright and turned by 90, 180 and 270 degrees."""
    out = []
    for name in names:
        image = Image.open(SHARED / "photos" / f"{name}.jpg").convert("RGB")
        out += [image.rotate(90 * k, expand=True) for k in range(4)]
    return out


def outputs(model: JobModel, images: list[Image.Image], output: str = "probs") -> np.ndarray:
    """The job model's outputs for ``images``, in batches of the model's batch size."""
    x = torch.stack([model.transform(image) for image in images])
    size = model.options.batch_size
    batches = [Batch(list(range(len(x[i : i + size]))), x[i : i + size], {}) for i in range(0, len(x), size)]
    return np.concatenate([array for _, array in model.run(batches, output, total=len(x))])  # type: ignore[misc]


def load(path: Path, notes: list[str] | None = None, **options: object) -> JobModel:
    on_event = (lambda e: notes.append(e.text) if isinstance(e, Note) else None) if notes is not None else None
    kwargs = {"on_event": on_event} if on_event else {}
    return JobModel.load(path, RunOptions(**({"workers": 0, "batch_size": 8} | options)), **kwargs)  # type: ignore[arg-type]


def check_fidelity(reference: np.ndarray, got: np.ndarray) -> None:
    """The bar: max |dprob| <= 0.02, and every top-1 disagreement a near tie in fp32 (top-2 margin < 0.02)."""
    assert np.abs(reference - got).max() <= 0.02
    top2 = np.sort(reference, axis=1)[:, -2:]
    disagree = reference.argmax(1) != got.argmax(1)
    assert (top2[disagree, 1] - top2[disagree, 0] < 0.02).all()


# ---------------------------------------------------------------------------------- auto precision
def test_auto_holds_bf16_on_a_cpu_with_bf16_instructions() -> None:
    feature = cpu_bf16_feature()
    if feature is None:
        pytest.skip("this CPU has neither AMX-BF16 nor AVX512-BF16")
    assert resolve_dtype("cpu") == (Dtype.BF16_HELD, f"weights held in bfloat16; this CPU has {feature}")


def test_auto_is_fp32_on_a_cpu_without(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "cpu_bf16_feature", lambda: None)
    dtype, reason = resolve_dtype(torch.device("cpu"))
    assert dtype is Dtype.FP32 and "neither AMX-BF16 nor AVX512-BF16" in reason


def test_auto_autocasts_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("cuda")[0] is Dtype.BF16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("cuda:1")[0] is Dtype.FP16


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f avx512_bf16", "AVX512-BF16"), ("fpu amx_tile amx_bf16 avx512_bf16", "AMX-BF16"), ("fpu avx2", None)],
)
def test_cpuinfo_decides_where_torch_cannot_tell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, expected: str | None
) -> None:
    monkeypatch.setattr(model_module, "_torch_probe", lambda name: None)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_bf16_feature(cpuinfo) == expected
    assert cpu_bf16_feature(tmp_path / "missing") is None


def test_torch_probes_are_asked_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_module, "_torch_probe", lambda name: name == "_is_avx512_bf16_supported")
    assert cpu_bf16_feature(tmp_path / "missing") == "AVX512-BF16"


def test_auto_loads_the_pick_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "cpu_bf16_feature", lambda: "AVX512-BF16")
    notes: list[str] = []
    model = load(ROTNET, notes, dtype="auto")
    assert model.dtype is Dtype.BF16_HELD
    assert notes == ["precision: bf16-held (weights held in bfloat16; this CPU has AVX512-BF16)"]
    monkeypatch.setattr(model_module, "cpu_bf16_feature", lambda: None)
    assert load(ROTNET, dtype="auto").dtype is Dtype.FP32


def test_explicit_precision_is_kept_without_a_note() -> None:
    notes: list[str] = []
    assert load(ROTNET, notes, dtype="bf16-held").dtype is Dtype.BF16_HELD
    assert load(ROTNET, notes, dtype="bf16").dtype is Dtype.BF16
    assert notes == []


def test_library_defaults_stay_exact() -> None:
    assert RunOptions().dtype is Dtype.FP32 and RunOptions().compile is Compile.OFF


def test_other_backends_run_fp32() -> None:
    ort = Backend.ORT
    assert RunOptions(backend=ort, dtype=Dtype.AUTO).dtype is Dtype.AUTO  # resolved to fp32 on load
    with pytest.raises(JobOptionError, match="fp32"):
        RunOptions(backend=ort, dtype=Dtype.BF16_HELD)
    with pytest.raises(JobOptionError, match="compile"):
        RunOptions(backend=ort, compile=Compile.ON)
    assert RunOptions(backend=ort, compile=Compile.AUTO).compile is Compile.AUTO


def test_compile_takes_booleans() -> None:
    assert RunOptions(compile=True).compile is Compile.ON  # type: ignore[arg-type]
    assert RunOptions(compile=False).compile is Compile.OFF  # type: ignore[arg-type]
    with pytest.raises(JobOptionError, match="compile"):
        RunOptions(compile="sometimes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- fp32 exact
@pytest.mark.parametrize("path", [ROTNET, PLACES, PE])
def test_fp32_is_the_plain_model_exactly(path: Path) -> None:
    images = rotated_photos(PHOTOS[:2])
    net, info = roost.load_pretrained_model(path, inference=True)
    transform = inference_preset(net.size, info.rgb_stats)  # type: ignore[arg-type]
    x = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        embedding = net.embedding(x)
        probs = net.classify(embedding).softmax(dim=1) if net.num_classes else None
    model = load(path, dtype="fp32")
    assert np.array_equal(outputs(model, images, "embedding"), embedding.numpy())
    if probs is not None:
        assert np.array_equal(outputs(model, images), probs.numpy())


# ---------------------------------------------------------------------------------- bf16 held
@pytest.mark.parametrize("path", CLASSIFIERS)
def test_bf16_held_is_within_the_fidelity_bar(path: Path) -> None:
    images = rotated_photos()
    reference = outputs(load(path, dtype="fp32"), images)
    got = outputs(load(path, dtype="bf16-held"), images)
    assert not np.array_equal(reference, got)  # it did run in bfloat16
    check_fidelity(reference, got)


def test_bf16_held_embeddings_point_the_same_way() -> None:
    images = rotated_photos(PHOTOS[:3])
    reference = outputs(load(PE, dtype="fp32"), images, "embedding")
    got = outputs(load(PE, dtype="bf16-held"), images, "embedding")
    cosine = (reference * got).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() >= 0.999


def test_bf16_held_keeps_the_head_and_rope_in_float32() -> None:
    net, _ = roost.load_pretrained_model(ROTNET, inference=True)
    hold_bf16(net)
    assert net.conv_proj.weight.dtype == torch.bfloat16
    assert {p.dtype for p in net.encoder.parameters()} == {torch.bfloat16}
    for part in (net.norm, net.attn_pool, net.classifier):
        assert part is not None
        assert {p.dtype for p in part.parameters()} == {torch.float32}
    assert net.rope.pos_embed.dtype == torch.float32
    with torch.inference_mode():
        tokens = net.forward_features(torch.zeros(1, 3, *net.size, dtype=torch.bfloat16))
    assert tokens.dtype == torch.float32  # the final norm ran in float32


# ---------------------------------------------------------------------------------- compiling
def fake_compile(calls: list[tuple[int, ...]]) -> Callable:
    """A torch.compile stand-in that records the input shapes and runs the function as it is."""

    def compile_(fn: Callable, **kwargs: object) -> Callable:
        def compiled(x: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(x.shape))
            return fn(x)

        return compiled

    return compile_


def test_compiled_runs_one_shape_and_cuts_the_padding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", fake_compile(calls))
    images = rotated_photos(PHOTOS[:2])[:6]
    notes: list[str] = []
    got = outputs(load(ROTNET, notes, batch_size=4, compile=True), images)
    assert [shape[0] for shape in calls] == [4, 4]  # the last batch of 2 padded to 4
    np.testing.assert_allclose(got, outputs(load(ROTNET, batch_size=4), images), atol=1e-6)
    assert any(note.startswith("compiling the model") and str(tmp_path / "inductor") in note for note in notes)


def test_compile_that_fails_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fn: Callable, **kwargs: object) -> Callable:
        raise RuntimeError("no compiler here\nmore detail")

    monkeypatch.setattr(torch, "compile", refuse)
    images = rotated_photos(PHOTOS[:1])
    notes: list[str] = []
    got = outputs(load(ROTNET, notes, compile=True), images)
    assert notes == ["torch.compile failed (RuntimeError: no compiler here); running eagerly"]
    assert np.array_equal(got, outputs(load(ROTNET), images))


def test_compile_that_fails_at_the_first_batch_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fn: Callable, **kwargs: object) -> Callable:
        def compiled(x: torch.Tensor) -> torch.Tensor:
            raise OSError("cannot write the kernel")

        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    images = rotated_photos(PHOTOS[:3])
    notes: list[str] = []
    got = outputs(load(ROTNET, notes, batch_size=4, compile=True), images)  # 3 batches: one note
    assert [n for n in notes if "failed" in n] == [
        "torch.compile failed (OSError: cannot write the kernel); running eagerly"
    ]
    assert np.array_equal(got, outputs(load(ROTNET, batch_size=4), images))


@pytest.mark.parametrize(("total", "compiled"), [(None, False), (4, False), (5, True)])
def test_auto_compiles_only_runs_large_enough(
    monkeypatch: pytest.MonkeyPatch, total: int | None, compiled: bool
) -> None:
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", fake_compile(calls))
    monkeypatch.setattr(model_module, "COMPILE_MIN_IMAGES", {"cpu": 5})
    model = load(ROTNET, compile="auto")
    x = torch.stack([model.transform(image) for image in rotated_photos(PHOTOS[:1])])
    list(model.run([Batch([0, 1, 2, 3], x, {})], "probs", total=total))
    assert bool(calls) is compiled


def test_auto_never_compiles_where_no_threshold_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch, "compile", fake_compile(calls))
    monkeypatch.setattr(model_module, "COMPILE_MIN_IMAGES", {"cuda": 5})
    model = load(ROTNET, compile="auto")
    x = torch.stack([model.transform(image) for image in rotated_photos(PHOTOS[:1])])
    list(model.run([Batch([0, 1, 2, 3], x, {})], "probs", total=10**6))
    assert calls == []


def test_inductor_cache_under_roost_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert use_inductor_cache() == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_inductor_cache() == str(tmp_path / "mine")  # the user's own choice stands


# ---------------------------------------------------------------------------------- workers
@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (3, 2), (16, 4)])
def test_workers_sized_from_the_machine(monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int) -> None:
    monkeypatch.setattr(base_module.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_workers() == workers
    assert RunOptions().workers == workers
    assert RunOptions(workers=0).workers == 0


@pytest.mark.parametrize(("cpus", "workers"), [(2, 1), (8, 7), (64, 16)])
def test_a_gpu_gets_more_decoders(monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int) -> None:
    monkeypatch.setattr(base_module.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_workers(torch.device("cuda")) == workers
    assert default_workers(torch.device("cpu")) == min(max(cpus - 1, 1), 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_workers() == workers  # no device named: CUDA when available


# ---------------------------------------------------------------------------------- the command line
def test_cli_says_which_precision_it_picked(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(SHARED / "photos" / "kite.jpg").resize((96, 64)).save(folder / "kite.jpg")
    runner = CliRunner()
    result = runner.invoke(app, ["orient", str(folder), "-m", str(ROTNET), "-q", "--workers", "0"])
    assert result.exit_code == 0, result.output
    dtype, reason = resolve_dtype("cpu")
    assert [line for line in result.stderr.splitlines() if line.startswith("precision:")] == [
        f"precision: {dtype.value} ({reason})"
    ]
    exact = runner.invoke(app, ["orient", str(folder), "-m", str(ROTNET), "-q", "--workers", "0", "--dtype", "fp32"])
    assert exact.exit_code == 0 and "precision:" not in exact.stderr


# ---------------------------------------------------------------------------------- full size
@pytest.mark.slow
def test_bf16_held_fidelity_full_size_so150m(tmp_path: Path) -> None:
    """The rotnet network at full size (178M parameters, 252 px) with the parity formula weights."""
    from roost.data.transforms import get_rgb_stats
    from roost.weights.checkpoint import Checkpoint, get_signature, write_checkpoint
    from tests.formula import fill_formula

    network = "rope_vit_reg8_so150m_p14_swiglu_rms_ap"
    net = roost.create_model(network, 4, size=(252, 252))
    fill_formula(net)
    path = tmp_path / "so150m.pt"
    classes = {"0": 0, "90": 1, "180": 2, "270": 3}
    rgb = dict(get_rgb_stats("centered"))
    write_checkpoint(
        path, Checkpoint(net.state_dict(), get_signature((0, 3, 252, 252), 4), classes, rgb, network=network)
    )
    del net
    images = rotated_photos(("kite", "dune", "garden", "wood", "aqua", "storm", "elephants", "path"))
    reference = outputs(load(path, dtype="fp32", batch_size=4), images)
    check_fidelity(reference, outputs(load(path, dtype="bf16-held", batch_size=4), images))


@pytest.mark.slow
def test_a_real_compile_matches_eager_and_caches_under_roost_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    images = rotated_photos(PHOTOS[:2])[:6]
    notes: list[str] = []
    got = outputs(load(ROTNET, notes, batch_size=4, compile=True), images)
    assert not [note for note in notes if "failed" in note]
    np.testing.assert_allclose(got, outputs(load(ROTNET, batch_size=4), images), atol=1e-4)
    assert any((tmp_path / "inductor").rglob("*.py"))  # inductor wrote its code under ROOST_HOME


# ---------------------------------------------------------------------------------- uint8 until the model
@pytest.mark.parametrize("dtype", ["fp32", "bf16-held"])
def test_uint8_batches_are_normalised_where_the_model_runs_with_the_same_result(dtype: str) -> None:
    """Workers ship uint8 pixels (a quarter of the bytes); the model's outputs are those of float inputs."""
    model = load(ROTNET, dtype=dtype)
    images = rotated_photos()[:8]
    pixels = torch.stack([model.transform.pixels(image) for image in images])
    assert pixels.dtype == torch.uint8
    ((_, from_pixels),) = model.run([Batch(list(range(8)), pixels, {})], "probs")
    assert from_pixels is not None
    np.testing.assert_array_equal(from_pixels, outputs(model, images))
