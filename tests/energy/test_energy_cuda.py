"""The energy section's CUDA path: the RBM's fused and readable updates agree on the GPU,
the update on the GPU equals the CPU's given the same random numbers, and an RBM run
trained on the GPU (through the trainer) loads, samples and evaluates on a CPU.
Skipped without a CUDA GPU (run on a lent GPU machine by benchmarks/gpu_check.sh)."""

import pytest
import torch

import seqlab
from seqlab.data.images import binary_digits
from seqlab.energy.rbm import RBM

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("no_tf32")]  # the fixture is in tests/conftest.py


@pytest.mark.parametrize("persistent", [True, False])
def test_rbm_update_on_the_gpu_equals_the_cpu(persistent):
    x = binary_digits()[0][:40].double()
    torch.manual_seed(0)
    cpu = RBM(visible_size=64, hidden_size=30, persistent=persistent, n_chains=10).double()
    gpu = RBM(visible_size=64, hidden_size=30, persistent=persistent, n_chains=10).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    for step in range(4):
        u_v, u_h, u_start = cpu.uniforms(1, 10, torch.Generator().manual_seed(step))
        us = None if u_start is None else u_start[0]
        v0 = x[10 * step:10 * step + 10]
        cpu._update(v0, 0.05, 0.0, u_v[0].unbind(0), u_h[0].unbind(0), us)
        buf = gpu._fused_buffers(10)
        gpu._update_fused(v0.cuda(), 0.05, 0.0, u_v[0].cuda().unbind(0), u_h[0].cuda().unbind(0),
                          None if us is None else us.cuda(), buf)
    for name, a in cpu.state_dict().items():
        assert torch.allclose(a, gpu.state_dict()[name].cpu(), atol=1e-10), name


def test_rbm_run_on_the_gpu_loads_on_the_cpu(tmp_path):
    result = seqlab.train("rbm", out=tmp_path, progress=False, hidden_size=32, max_steps=300, eval_every=150,
                          eval_batches=4, device="cuda")
    assert result.best_val_loss is not None and result.best_val_loss < 40
    model, _ = seqlab.load(result.run_dir)  # on the CPU
    assert model.W.device.type == "cpu"
    ev = seqlab.evaluate(result.run_dir)
    assert ev.feature_accuracy > 0.5
    assert seqlab.sample(result.run_dir, n=4, steps=5, png=None).shape == (4, 64)
    gpu, _ = seqlab.load(result.run_dir, map_location="cuda")
    assert gpu.W.device.type == "cuda"
    fit = RBM(visible_size=64, hidden_size=32).cuda()
    fit.fit(binary_digits()[0].cuda(), epochs=2, generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.isfinite(fit.W).all()
