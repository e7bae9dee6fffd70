"""The generative section's plots (seqlab.viz.generative): the diffusion model's denoising
trajectory and the VAE's latent map."""

import pytest
import torch
from torch import nn

from seqlab.generative.diffusion import Diffusion
from seqlab.generative.vae import VAE
from seqlab.viz.generative import plot_latent_map, plot_trajectory

PNG = b"\x89PNG\r\n\x1a\n"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits(grey_digits):
    return grey_digits  # train, test, test labels (tests/conftest.py)


def randomized(model: Diffusion, seed: int = 0) -> Diffusion:
    """The U-Net's output conv starts at zero (eps_theta = 0); give it weights, so the
    snapshots differ from step to step."""
    torch.manual_seed(seed)
    nn.init.normal_(model.net.conv_out.weight, std=0.1)
    nn.init.normal_(model.net.conv_out.bias, std=0.1)
    return model


@pytest.mark.parametrize("method, steps, snapshots", [("ddpm", None, 8), ("ddim", 10, 5), ("ddim", 3, 8)])
def test_plot_trajectory(method, steps, snapshots, tmp_path):
    m = randomized(Diffusion(timesteps=50))
    _, snaps = m.sample(2, method=method, steps=steps, trajectory=True, snapshots=snapshots, generator=gen(0))
    ts = m.trajectory_timesteps(method, steps, snapshots)
    path = plot_trajectory(snaps, tmp_path / "traj.png", [f"t={t}" for t in ts], title="DDPM")
    assert path.stat().st_size > 0 and path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="labels: expected"):
        plot_trajectory(snaps, tmp_path / "x.png", ["one"])
    with pytest.raises(ValueError, match=r"snapshots\[1\]"):
        plot_trajectory([snaps[0], snaps[1] * 2], tmp_path / "x.png")
    plot_trajectory([torch.rand(2, 3, 8, 8)] * 3, tmp_path / "rgb.png")  # RGB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb.png", "traj.png"]  # nothing else written


def test_plot_trajectory_rejects(tmp_path):
    with pytest.raises(ValueError, match="snapshots: expected a non-empty list"):
        plot_trajectory([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"snapshots\[0\]: expected a tensor \(n, C, S, S\) with C = 1 or 3"):
        plot_trajectory([torch.rand(2, 2, 8, 8)], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_latent_map(tmp_path, digits):
    _, xte, labels = digits
    for latent in (1, 2, 5):  # against the label, the plane with a decoded grid, PCA
        out = plot_latent_map(VAE(latent_size=latent, hidden_size=32), xte[:100], labels[:100],
                              tmp_path / f"m{latent}.png", n=5)
        assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="labels: expected one label per image"):
        plot_latent_map(VAE(latent_size=2), xte[:10], labels[:9], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="model: expected a VAE"):
        plot_latent_map(nn.Linear(2, 2), xte[:10], labels[:10], tmp_path / "bad.png")
