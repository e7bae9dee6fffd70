"""The generative models' CUDA path: each family trains a few steps on the GPU through the
trainer (the GAN's own train_step with a CUDA generator included), then loads, samples and
is evaluated on a CPU. Skipped without a CUDA GPU (run on a lent GPU machine by
benchmarks/gpu_check.sh)."""

import pytest
import torch

import seqlab

FAMILIES = ("gan", "vae", "diffusion")

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("no_tf32")]  # the fixture is in tests/conftest.py


@pytest.mark.parametrize("family", FAMILIES)
def test_train_on_the_gpu_sample_on_the_cpu(family, tmp_path):
    result = seqlab.train(family, out=tmp_path / family, progress=False, max_steps=20, eval_every=10,
                          eval_batches=2, device="cuda")
    run = result.run_dir
    assert result.steps == 20 and (run / "samples" / "step-00000020.png").exists()
    model, _ = seqlab.load(run)  # on the CPU
    assert next(model.parameters()).device.type == "cpu"
    x = seqlab.sample(run, n=8, png=None).images
    assert x.shape == (8, 1, 8, 8) and torch.isfinite(x).all()
    ev = seqlab.evaluate(run, n=20)  # on the CPU, against the reference classifier of this session's cache
    assert ev.n == 20 and ev.frechet >= 0
    gpu, _ = seqlab.load(run, map_location="cuda")
    y = gpu.sample(8, generator=torch.Generator(device="cuda").manual_seed(0))
    assert y.device.type == "cuda" and y.shape == (8, 1, 8, 8)
