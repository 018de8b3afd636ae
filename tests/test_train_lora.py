"""LoRA: a fresh adapter changes nothing, merging equals the unmerged model, packed Linears work."""
import torch

from conftest import tiny_model
from lmdm.checkpoints import from_pretrained, save_pretrained
from lmdm.nn.fast import pack_linears
from lmdm.train.lora import LoRALinear, add_lora, merge_lora


def window_output(model, seed=0):
    p = model.config.pattern
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, p.window_frames, generator=g)
    ctx = torch.cat((torch.ones(2, 1, p.window_frames), torch.randn(2, 8, p.window_frames, generator=g)), 1)
    cond = model.dit.condition(*model.text_conditioning(["warm piano", ""]))
    return model.dit(x, torch.tensor([0.3, 0.8]), cond, {"context": ctx}, p.pattern, p.context_frames,
                     p.block_frames, p.context_chunks)


def test_lora_merge_equals_unmerged_and_loads(tmp_path):
    model = tiny_model()
    pack_linears(model.dit)            # as after streaming inference: forwards monkey-patched
    with torch.no_grad():
        ref = window_output(model)
    names = add_lora(model.dit, rank=2, alpha=4.0)
    assert len(names) == 2 * 7 and all(isinstance(model.dit.get_submodule(n), LoRALinear) for n in names)
    with torch.no_grad():
        assert torch.equal(window_output(model), ref)          # B is zero-initialised
        for m in model.dit.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.1)
    # a training step reaches only the adapters (and whatever was left trainable)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    window_output(model).square().mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all("lora_" in n for n in grads)
    with torch.no_grad():
        unmerged = window_output(model)
        assert not torch.allclose(unmerged, ref)
        merge_lora(model)
        assert not any(isinstance(m, LoRALinear) for m in model.modules())
        torch.testing.assert_close(window_output(model), unmerged, rtol=1e-5, atol=1e-5)
    save_pretrained(model, tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(window_output(from_pretrained(tmp_path / "m")), unmerged, rtol=1e-5, atol=1e-5)
