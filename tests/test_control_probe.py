"""The control probe behind the sketch's control loss: it reads controls back from latents that
carry them, and the loss it gives is zero for the true latents and grows with the estimate's error."""
import torch

from lmdm.train.control_probe import ControlProbe, fit_control_probe, probe_r2


def pairs(n=12, frames=96, io=8, seed=0):
    """Latents whose first two channels are smoothed copies of the two controls, the rest noise."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.nn.functional.avg_pool1d(torch.rand(1, 2, frames + 4, generator=g), 5, 1)[0] * 2 - 1
        z = torch.randn(io, frames, generator=g)
        z[:2] = 3 * y
        out.append((z, y))
    return out


def test_probe_reads_controls_that_the_latents_carry():
    probe, r2 = fit_control_probe(pairs(), 8, steps=150, crop=64, batch=8, progress=False)
    assert min(r2) > 0.9, r2
    # and it cannot read them from latents that do not carry them
    shuffled = [(z, y2) for (z, _), (_, y2) in zip(pairs(), pairs(seed=1))]
    assert max(probe_r2(probe, shuffled)) < 0.2


def test_fit_is_deterministic():
    a, _ = fit_control_probe(pairs(), 8, steps=5, crop=64, batch=4, seed=3, progress=False)
    b, _ = fit_control_probe(pairs(), 8, steps=5, crop=64, batch=4, seed=3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert isinstance(a, ControlProbe) and not any(p.requires_grad for p in a.parameters())
