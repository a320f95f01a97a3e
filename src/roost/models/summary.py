"""One-line summaries of networks: parameter count and output shapes at a size."""

from __future__ import annotations

import torch

from roost.models.registry import create_model

# (size, classes) of the three seed model cards; other networks default to (224, 0).
CARDS = {
    "rope_vit_reg8_so150m_p14_swiglu_rms_ap": (252, 4),
    "rope_vit_reg4_b14": (224, 365),
    "rope_i_vit_reg1_s16_pn_npn_avg_c1": (512, 0),
}


def summarize(
    name: str, num_classes: int | None = None, size: int | None = None
) -> tuple[str, int, str, tuple, tuple, dict]:
    """(network, size, params, forward shape, embedding shape, detection_features shapes) for one image."""
    card_size, card_classes = CARDS.get(name, (224, 0))
    size = size or card_size
    num_classes = card_classes if num_classes is None else num_classes
    net = create_model(name, num_classes, size=size).eval()
    x = torch.zeros(1, 3, size, size)
    with torch.inference_mode():
        tokens = net.forward_features(x)
        embedding = net.embedding_from_features(tokens)
        out = net.classify(embedding)
        maps = {k: tuple(v.shape) for k, v in net.detection_features(x).items()}
    params = sum(p.numel() for p in net.parameters())
    return net.network_name or name, size, f"{params / 1e6:.1f}M", tuple(out.shape), tuple(embedding.shape), maps
