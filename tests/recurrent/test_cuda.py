"""The CUDA path: parity with cuDNN, bf16 autocast, a GPU checkpoint loading on a CPU.
Skipped without a CUDA GPU (run on the lent GPU machine by benchmarks/gpu_check.sh)."""

import pytest
import torch
from torch import nn

from seqlab.recurrent import GRU, LSTM, RNN
from seqlab.testing import recurrent_parity

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("no_tf32")]  # the fixture is in tests/conftest.py

CASES = [(RNN, lambda: nn.RNN(5, 8, 2, batch_first=True)), (LSTM, lambda: nn.LSTM(5, 8, 2, batch_first=True)),
         (GRU, lambda: nn.GRU(5, 8, 2, batch_first=True))]


@pytest.mark.parametrize("cls,make", CASES, ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, (1e-10, 0.0)), (torch.float32, (1e-5, 1e-5))], ids=["f64", "f32"])
def test_parity_with_cudnn(cls, make, fused, dtype, tol):
    torch.manual_seed(0)
    theirs = make().to("cuda", dtype)
    ours = cls.from_torch(theirs, fused=fused)
    x = torch.randn(4, 11, 5, device="cuda", dtype=dtype)
    recurrent_parity(ours, theirs, x, lengths=torch.tensor([11, 6, 1, 9])).check(*tol)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_bf16_autocast_step(cell, fused):
    from seqlab.recurrent.charlm import CharLM

    torch.manual_seed(0)
    model = CharLM(cell=cell, vocab_size=20, hidden_size=32, num_layers=2, fused=fused).cuda()
    x = torch.randint(0, 20, (4, 16), device="cuda")
    y = torch.randint(0, 20, (4, 16), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = model.loss((x, y))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.dtype == torch.float32
               for p in model.parameters())


def test_gpu_run_loads_and_samples_on_cpu(tmp_path):
    import seqlab

    result = seqlab.train("lstm", out=tmp_path / "run", progress=False, preset="cpu-tiny", block_size=32,
                          max_steps=30, batch_size=16, eval_every=15, eval_batches=2, device="cuda", precision="bf16",
                          warmup_steps=2)
    assert result.best_val_loss < 4.6  # below the uniform guess over ~100 characters
    model, _ = seqlab.load(result.run_dir, map_location="cpu")
    assert next(model.parameters()).device.type == "cpu"
    text = seqlab.sample(result.run_dir, prompt="def ", length=20, seed=0)
    assert len(text) == 20
