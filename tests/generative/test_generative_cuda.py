"""The generative models' CUDA path: each family trains a few steps on the GPU through the
trainer (the GAN's own train_step with a CUDA generator included), then loads, samples and
is evaluated on a CPU. Skipped without a CUDA GPU (run on a lent GPU machine by
benchmarks/gpu_check.sh)."""

import pytest
import torch

from seqlab.generative import runs

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("no_tf32")]  # the fixture is in tests/conftest.py


@pytest.mark.parametrize("family", runs.FAMILIES)
def test_train_on_the_gpu_sample_on_the_cpu(family, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path / "cache"))
    result, run = runs.start_run(family, out=tmp_path / family, progress=False,
                                 train_options={"max_steps": 20, "eval_every": 10, "eval_batches": 2,
                                                "device": "cuda"})
    assert result.steps == 20 and (run / "samples" / "step-00000020.png").exists()
    model, _ = runs.load_model(run)  # on the CPU
    assert next(model.parameters()).device.type == "cpu"
    x = runs.sample_run(run, n=8)
    assert x.shape == (8, 1, 8, 8) and torch.isfinite(x).all()
    gpu, _ = runs.load_model(run, map_location="cuda")
    y = gpu.sample(8, generator=torch.Generator(device="cuda").manual_seed(0))
    assert y.device.type == "cuda" and y.shape == (8, 1, 8, 8)
