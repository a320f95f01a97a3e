"""The model API: spec test vectors (float64), sizes, masked encoding, autocast, errors."""

from __future__ import annotations

import pytest
import torch

import roost
from roost.errors import ConfigError, InputShapeError
from roost.models.rope_vit import RoPEViT

TINY = {"num_layers": 2, "hidden_dim": 64, "num_heads": 2, "mlp_dim": 96}


def tiny(name: str = "rope_vit_reg4_b14", num_classes: int = 5, size: int = 56, **overrides) -> RoPEViT:
    torch.manual_seed(0)
    net = roost.create_model(name, num_classes, size=size, config=TINY | overrides)
    with torch.no_grad():  # zero-initialised tokens and head would hide mistakes
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net.eval()


def spec_weights(net: torch.nn.Module) -> None:
    """architecture.md §10: base = cos(0.37 k + 1.3 t), norms 1 + 0.1 base, the rest 0.02 base."""
    state = {}
    for t, (key, value) in enumerate(net.state_dict().items()):
        base = torch.cos(0.37 * torch.arange(value.numel(), dtype=torch.float64) + 1.3 * t).reshape(value.shape)
        is_norm = key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "pre_block.0.weight"))
        state[key] = 1 + 0.1 * base if is_norm else 0.02 * base
    net.load_state_dict(state)


def spec_input(h: int, w: int) -> torch.Tensor:
    return torch.sin(0.001 * torch.arange(3 * h * w, dtype=torch.float64)).reshape(1, 3, h, w)


VECTORS = {
    "A": (
        "rope_vit_reg8_so150m_p14_swiglu_rms_ap", 4, (252, 252),
        [-0.09594514, 0.20657593, -0.06948375, 0.20805608], -0.07989507,
        [-0.13737246, 0.20937075, 0.15731619, -0.18582686], 0.04348762,
        (224, 280), -0.07988262, [-0.09593805, 0.20658477, -0.06949295],
        -0.07986041, [-0.09592507, 0.20659667, -0.06951179],
    ),
    "B": (
        "rope_vit_reg4_b14", 365, (224, 224),
        [0.35712690, 1.70764093, 1.59390190, 0.60044645], -0.07378071,
        [0.08401559, -0.20767287, -0.17889544, 0.12429393], 0.01355315,
        (280, 224), -0.07378071, [0.35715154, 1.70768040, 1.59386203],
        -0.07378062, [0.35715663, 1.70768279, 1.59385626],
    ),
    "C": (
        "rope_i_vit_reg1_s16_pn_npn_avg_c1", 0, (512, 512),
        [1.45621701, -1.78485176, 1.71224500, -1.37763120], 1.16902091,
        [1.45621701, -1.78485176, 1.71224500, -1.37763120], 1.16902091,
        (384, 448), 1.16739803, [1.48857643, -1.70613025, 1.70527961],
        1.17043354, [1.45622335, -1.66391991, 1.67424387],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(VECTORS))
def test_spec_vectors_float64(model: str) -> None:
    name, classes, size, emb4, emb_sum, out4, out_sum, new, dyn_sum, dyn3, adj_sum, adj3 = VECTORS[model]
    net = roost.create_model(name, classes, size=size).double().eval()
    spec_weights(net)
    close = {"abs": 2e-6}
    with torch.inference_mode():
        emb, out = net.embedding(spec_input(*size)), net(spec_input(*size))
        assert emb[0, :4].tolist() == pytest.approx(emb4, **close)
        assert emb.sum().item() == pytest.approx(emb_sum, **close)
        assert out[0, :4].tolist() == pytest.approx(out4, **close)
        assert out.sum().item() == pytest.approx(out_sum, **close)
        net.set_dynamic_size(True)
        emb = net.embedding(spec_input(*new))
        assert emb.sum().item() == pytest.approx(dyn_sum, **close)
        assert emb[0, :3].tolist() == pytest.approx(dyn3, **close)
        net.set_dynamic_size(False)
        net.adjust_size(new)
        emb = net.embedding(spec_input(*new))
        assert emb.sum().item() == pytest.approx(adj_sum, **close)
        assert emb[0, :3].tolist() == pytest.approx(adj3, **close)
    grid = (new[0] // 14, new[1] // 14) if model != "C" else (new[0] // 16, new[1] // 16)
    assert net.state_dict()["pos_embedding"].shape[1] == net.num_special_tokens + grid[0] * grid[1]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "total"), [("A", -146.79040), ("B", 83.53631), ("C", 1171.49071)])
def test_spec_forward_features_float32(model: str, total: float) -> None:
    name, classes, size = VECTORS[model][:3]
    net = roost.create_model(name, classes, size=size).eval()
    spec_weights(net)
    with torch.inference_mode():
        tokens = net.forward_features(spec_input(*size).float())
    assert tokens.shape == (1, net.num_special_tokens + (size[0] // net.config.patch_size) ** 2, net.embedding_size)
    assert tokens.double().sum().item() == pytest.approx(total, abs=2e-3)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((3, 56, 56), "shape"), ((1, 1, 56, 56), "shape"), ((1, 3, 57, 56), "divisible"), ((1, 3, 70, 56), "differs")],
)
def test_bad_inputs_raise_value_errors(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        tiny()(torch.zeros(shape))
    assert issubclass(InputShapeError, ValueError)


def test_bad_sizes_and_configs() -> None:
    with pytest.raises(ConfigError, match="multiples of the patch"):
        roost.create_model("rope_vit_b14", size=(225, 224))
    with pytest.raises(ConfigError, match="unknown RoPE-ViT config keys"):
        roost.create_model("rope_vit_b14", config={"num_layer": 2})
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        roost.create_model("rope_vit_b14", config={"num_heads": 5})


def test_dynamic_size_matches_native_and_adapts() -> None:
    net, x = tiny(), torch.randn(2, 3, 56, 56)
    with torch.inference_mode():
        fixed = net(x)
        net.set_dynamic_size(True)
        assert torch.equal(net(x), fixed)
        out = net.detection_features(torch.randn(2, 3, 70, 42))
    assert out["neck"].shape == (2, 64, 5, 3)
    assert net.rope.pos_embed.shape[0] == 16  # nothing stored by the per-call adaptation
    assert net.state_dict()["pos_embedding"].shape[1] == 5 + 16


def test_dynamic_rope_equals_fresh_model_rope() -> None:
    net = tiny()
    net.set_dynamic_size(True)
    fresh = roost.create_model("rope_vit_reg4_b14", 5, size=(70, 42), config=TINY)
    assert torch.equal(net.rope.table((5, 3)), fresh.rope.pos_embed)


def test_adjust_size_is_permanent() -> None:
    net = tiny()
    net.adjust_size((84, 56))
    assert net.size == (84, 56)
    assert net.state_dict()["pos_embedding"].shape == (1, 5 + 24, 64)
    assert net(torch.randn(1, 3, 84, 56)).shape == (1, 5)
    with pytest.raises(InputShapeError):
        net(torch.randn(1, 3, 56, 56))


SEEDS = ["rope_vit_reg4_b14", "rope_vit_reg8_so150m_p14_swiglu_rms_ap", "rope_i_vit_reg1_s16_pn_npn_avg_c1"]


@pytest.mark.parametrize("name", SEEDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_close_to_float32(name: str, dtype: torch.dtype) -> None:
    net = tiny(name, size=(64, 64) if "s16" in name else 56)
    x = torch.randn(2, 3, *net.size)
    with torch.inference_mode():
        ref = net.embedding(x)
        with torch.autocast("cpu", dtype=dtype):
            low = net.embedding(x)
    assert not torch.equal(low.float(), ref)  # the matmuls really ran in low precision
    assert torch.allclose(low.float(), ref, atol=0.05 * ref.abs().max().item())


def test_cast_model_runs_in_bfloat16() -> None:
    net = tiny().to(torch.bfloat16)
    assert net.rope.pos_embed.dtype == torch.bfloat16
    assert net(torch.randn(1, 3, 56, 56, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["rope_vit_reg4_b14", "rope_vit_reg8_b14_nps_avg", "rope_i_vit_s16_pn_aps_c1"])
def test_masked_encoding_omission(name: str) -> None:
    net = tiny(name, size=64 if "16" in name else 56)
    x = torch.randn(2, 3, *net.size)
    n = net.grid(net.size)[0] * net.grid(net.size)[1]
    s = net.num_special_tokens
    with torch.inference_mode():
        full = net.forward_features(x)
        ids = torch.arange(n).expand(2, -1)
        assert torch.allclose(net.masked_encoding_omission(x, ids)["tokens"], full, atol=1e-6)
        assert torch.allclose(net.masked_encoding_omission(x)["tokens"], full, atol=1e-6)
        keep = torch.stack([torch.randperm(n)[:7] for _ in range(2)])
        out = net.masked_encoding_omission(x, keep, return_all_features=True, return_keys="all")
    assert out["tokens"].shape == (2, s + 7, 64, 2)
    assert out["embedding"].shape == (2, 64)


def test_masked_encoding_omission_uses_the_kept_positions() -> None:
    # One kept patch must see exactly the RoPE row and pos-embedding row of its own position.
    net = tiny()
    x = torch.randn(1, 3, 56, 56)
    with torch.inference_mode():
        a = net.masked_encoding_omission(x, torch.tensor([[3, 9]]))["tokens"]
        b = net.masked_encoding_omission(x, torch.tensor([[9, 3]]))["tokens"]
    assert torch.allclose(a[:, 5], b[:, 6], atol=1e-6) and torch.allclose(a[:, 6], b[:, 5], atol=1e-6)


def test_masked_encoding_retention() -> None:
    net = tiny()
    x = torch.randn(2, 3, 56, 56)
    with torch.inference_mode():
        none = net.masked_encoding_retention(x, torch.zeros(2, 16), return_keys="all")
        full = net.forward_features(x)
        masked = net.masked_encoding_retention(x, torch.ones(2, 16), mask_token=torch.zeros(1, 1, 64))
    patches = full[:, 5:].transpose(1, 2).reshape(2, 64, 4, 4)
    assert torch.allclose(none["features"], patches, atol=1e-6)
    assert torch.allclose(none["embedding"], net.embedding(x), atol=1e-6)
    assert not torch.allclose(masked["features"], patches)


def test_out_indices_give_stages_without_norm() -> None:
    net = tiny(out_indices=[0, 1])
    x = torch.randn(1, 3, 56, 56)
    with torch.inference_mode():
        stages = net.detection_features(x)
        plain = tiny().detection_features(x)["neck"]
    assert list(stages) == ["stage1", "stage2"]
    assert torch.allclose(stages["stage2"], plain, atol=1e-6)


def test_bool_attention_mask() -> None:
    net, x = tiny(), torch.randn(1, 3, 56, 56)
    with torch.inference_mode():
        allowed = net.forward_features(x, attn_mask=torch.ones(21, 21, dtype=torch.bool))
        assert torch.allclose(allowed, net.forward_features(x), atol=1e-6)


def test_freeze_and_reset_classifier() -> None:
    net = tiny()
    net.freeze(freeze_classifier=False)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    net.freeze(unfreeze_features=True)
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {"norm.weight", "norm.bias"}
    net.reset_classifier(7)
    assert net(torch.randn(1, 3, 56, 56)).shape == (1, 7)
    net.reset_classifier(0)
    assert net(torch.randn(1, 3, 56, 56)).shape == (1, 64)


def test_meta_construction_loads_with_assign() -> None:
    source = tiny()
    with torch.device("meta"):
        net = roost.create_model("rope_vit_reg4_b14", 5, size=56, config=TINY)
    assert not net.rope.pos_embed.is_meta
    net.load_state_dict(source.state_dict(), assign=True)
    x = torch.randn(1, 3, 56, 56)
    with torch.inference_mode():
        assert torch.equal(net.eval()(x), source(x))


def test_fresh_model_has_zero_head_and_trains() -> None:
    net = roost.create_model("rope_vit_reg8_so150m_p14_swiglu_rms_ap", 4, size=56, config=TINY)
    x = torch.randn(2, 3, 56, 56)
    assert torch.equal(net(x), torch.zeros(2, 4))
    net.train()
    net(x).sum().backward()
    assert net.classifier.weight.grad is not None
