import pytest
import torch

import lmdm


def randomized(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Give zero-initialised weights (router, output projections, 1x1 convs) random values, so
    every path of the model is exercised and a wrong mask or position changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def tiny_model(pattern: str = "block-causal", seed: int = 0, **pattern_overrides) -> lmdm.LiveMusicModel:
    torch.manual_seed(seed)
    cfg = lmdm.preset("tiny", pattern)
    for k, v in pattern_overrides.items():
        setattr(cfg.pattern, k, v)
    cfg.validate()
    return randomized(lmdm.LiveMusicModel(cfg).eval(), seed)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
