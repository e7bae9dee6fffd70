"""The transformer and language-model CUDA path: parity with PyTorch's kernels on the GPU,
GPU = CPU results, KV-cache generation, a bf16 training run whose checkpoint loads on a CPU.
Skipped without a CUDA GPU (run on a lent GPU machine by benchmarks/gpu_check.sh)."""

import pytest
import torch
from torch import nn

import seqlab
from seqlab.runs import get_family
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.testing import module_parity
from seqlab.transformer import MultiHeadAttention, TransformerBlock, causal_mask

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("no_tf32")]  # the fixture is in tests/conftest.py


@pytest.mark.parametrize("fused", [False, True])
def test_multihead_and_block_parity_on_the_gpu(fused):
    torch.manual_seed(0)
    x = torch.randn(3, 9, 32, dtype=torch.float64, device="cuda")
    mask = causal_mask(9, device="cuda")
    mha = nn.MultiheadAttention(32, 4, batch_first=True).to("cuda", torch.float64)
    ours = MultiHeadAttention.from_torch(mha, fused=fused)
    module_parity(ours, mha, {"x": x}, run_ours=lambda m, x: m(x, attn_mask=mask)[0],
                  run_theirs=lambda m, x: m(x, x, x, attn_mask=~mask, need_weights=False)[0]).check(1e-10)
    for norm_first in (True, False):
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                           norm_first=norm_first).to("cuda", torch.float64)
        module_parity(TransformerBlock.from_torch(layer, fused=fused), layer, {"x": x}).check(1e-10)


def test_gpt_on_the_gpu_equals_the_cpu_and_the_cache_is_exact():
    torch.manual_seed(0)
    cpu = GPT(GPTConfig(vocab_size=40, block_size=32, d_model=32, num_heads=4, num_layers=2)).double()
    gpu = GPT(cpu.config).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randint(0, 40, (2, 32))
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), atol=1e-10, rtol=0)
    gpu.float()
    a = gpu.generate([1, 2, 3], 60, seed=0, use_cache=True, top_k=10)
    b = gpu.generate([1, 2, 3], 60, seed=0, use_cache=False, top_k=10)
    assert a == b and len(a) == 60


def test_bf16_runs_on_the_gpu_load_and_sample_on_the_cpu(tmp_path):
    opts = dict(max_steps=20, eval_every=10, eval_batches=2, batch_size=8, device="cuda", precision="bf16")
    result = seqlab.train("gpt", out=tmp_path / "gpt", progress=False, preset="cpu-tiny", **opts)
    assert result.steps == 20 and result.best_val_loss < 5
    model, _ = seqlab.load(result.run_dir)  # on the CPU
    assert next(model.parameters()).device.type == "cpu"
    assert isinstance(seqlab.sample(result.run_dir, prompt="The ", length=20, seed=0), str)
    result = seqlab.train("bert", out=tmp_path / "bert", progress=False, block_size=32, num_layers=2, d_model=32,
                          **opts)
    assert result.steps == 20
    model, run = seqlab.load(result.run_dir)
    assert len(get_family("bert").fill(model, run, "a[MASK]c")[0]) == 5
