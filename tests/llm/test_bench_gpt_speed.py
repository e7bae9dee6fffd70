"""The reference of benchmarks/bench_gpt_speed.py computes what seqlab's GPT computes, so the
benchmark times the same model twice."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_gpt_speed import NanoGPTRef, make_steps  # noqa: E402

from seqlab.llm.gpt import GPT, GPTConfig  # noqa: E402


def test_reference_is_seqlabs_gpt_with_other_names():
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=13, block_size=8, d_model=16, num_heads=4, num_layers=2)).double()
    ref = NanoGPTRef(13, 8, 16, 4, 2).double()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    with torch.no_grad():
        for p in ours.parameters():  # every weight different from its initial value (LayerNorm gains too)
            p.add_(0.1 * torch.randn_like(p))
        ref.wte.weight.copy_(ours.w_x)
        ref.wpe.weight.copy_(ours.pos.p)
        for b, mine in zip(ref.blocks, ours.blocks.blocks):
            att = mine.self_attn
            b.qkv.weight.copy_(torch.cat([att.w_q, att.w_k, att.w_v]))
            b.proj.weight.copy_(att.w_o)
            b.ln_1.weight.copy_(mine.norm_self.gamma)
            b.ln_2.weight.copy_(mine.norm_mlp.gamma)
            b.fc.weight.copy_(mine.w_1)
            b.fc_out.weight.copy_(mine.w_2)
        ref.ln_f.weight.copy_(ours.blocks.norm.gamma)
    x = torch.randint(0, 13, (3, 8), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 13, (3, 8), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(ours.loss((x, y))[0], ref(x, y), atol=1e-12, rtol=0)


def test_the_three_steps_train():
    steps = make_steps(65)
    assert set(steps) == {"seqlab", "reference", "reference_fused"}
    x = torch.randint(0, 65, (2, 64), generator=torch.Generator().manual_seed(3))
    for model, step in steps.values():
        before = [p.detach().clone() for p in model.parameters()]
        first = step(x, x)
        assert step(x, x) < first  # the same batch twice: the loss goes down
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
