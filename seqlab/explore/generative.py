r"""The generative models widget's endpoints, over the runs below RUNS_DIR:

- ``GET /api/generative/runs``: the diffusion, VAE and GAN runs;
- ``GET /api/generative/diffusion?run=&method=ddpm|ddim&steps=&eta=&seed=&n=&snapshots=``:
  the denoising trajectory x_T ... x_0 of ``n`` samples, kept at ``snapshots`` evenly spaced
  steps (``Diffusion.sample(..., trajectory=True)`` and ``trajectory_timesteps``, with
  ``torch.Generator().manual_seed(seed)``, as ``seqlab sample`` draws them);
- ``GET /api/generative/vae/decode?run=&z=&i=&j=&u=&v=``: the decoded means sigmoid(f(z))
  for one code z: ``z`` given whole (comma-separated), or the point (u, v) of the plane of
  coordinates i and j (the other coordinates at 0, the prior's mean);
- ``GET /api/generative/vae/map?run=&i=&j=&n=&span=&points=``: that plane decoded on an
  n x n grid over [-span, span]^2, and the posterior means mu(x) of ``points`` test images
  projected on it (coordinates i and j), with their labels;
- ``GET /api/generative/samples?run=&seed=&n=``: ``model.sample(n, generator)`` of a GAN or
  VAE run (a GAN: G(z) for z ~ N(0, I) from the seed; the same seed, the same images).

Images are sent as numbers in [0, 1], shape (C, H, W) each, and drawn on a canvas. Every
size is capped (images, steps, grid points) so that a request stays within a few seconds.
"""

from __future__ import annotations


import torch
from fastapi import APIRouter, Query, Request

from seqlab.explore.common import BadRequest, family_of, models, run_name, run_path, runs_of

router = APIRouter()

FAMILIES = ("diffusion", "vae", "gan")
MAX_IMAGES = 16  # images per request
MAX_SNAPSHOTS = 101  # kept steps of a trajectory
MAX_DIFFUSION_WORK = 20_000  # images x timesteps of one trajectory, for 8 x 8 images and 8 base channels
MAX_GRID = 15  # the VAE map's n x n decoded grid
MAX_POINTS = 1000  # test images placed on the VAE map
MAX_SPAN = 10.0
MAX_SEED = 2**31 - 1
MAX_PIXELS = 64 * 64 * 3  # an image larger than this is not sent whole
SIZES = ("timesteps", "latent_size", "noise_size", "image_size", "channels")


def _run(request: Request, name: str, families: tuple[str, ...]):
    """The loaded model, record and lock of run ``name``, which must be of one of ``families``."""
    path = run_path(request, name)
    family = family_of(request, path)
    if family not in families:
        raise BadRequest(f"run: expected a {' or '.join(families)} run, got {run_name(request, path)!r} "
                         f"(family {family!r})")
    model, record, lock = models(request).get(path)
    c = model.config
    if c.channels * c.image_size ** 2 > MAX_PIXELS:
        raise BadRequest(f"run: expected images of at most {MAX_PIXELS} values, got {c.channels} x "
                         f"{c.image_size} x {c.image_size}")
    return model, record, lock


def _images(x: torch.Tensor, digits: int | None = None) -> list:
    """(n, C, H, W) in [0, 1] -> nested lists (optionally rounded, for pictures only)."""
    x = x.detach().cpu().clamp(0, 1)
    if digits is not None:
        x = x.double()
        x = torch.round(x * 10**digits) / 10**digits
    return x.tolist()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@router.get("/runs")
def generative_runs(request: Request) -> dict:
    """The diffusion, VAE and GAN runs under RUNS_DIR, each with its family and the sizes the
    page needs (from run.json, without loading the model)."""
    out = []
    for _, name, meta in runs_of(request, FAMILIES):
        config = meta.get("model_config")
        config = config if isinstance(config, dict) else {}
        sizes = {k: config[k] for k in SIZES if isinstance(config.get(k), int)}
        out.append({"name": name, "family": meta["family"], **sizes})
    return {"runs": out}


@router.get("/diffusion")
def diffusion(request: Request, run: str = Query(..., max_length=200),
              method: str = Query("ddim", pattern="^(ddpm|ddim)$"),
              steps: int | None = Query(None, ge=1, le=1000), eta: float = Query(0.0, ge=0.0, le=1.0),
              seed: int = Query(0, ge=0, le=MAX_SEED), n: int = Query(4, ge=1, le=MAX_IMAGES),
              snapshots: int = Query(21, ge=2, le=MAX_SNAPSHOTS)) -> dict:
    """The trajectory x_T ... x_0 of ``n`` samples: ``frames[k][b]`` is image b at step
    ``timesteps[k]`` (T first, 0 last)."""
    model, _, lock = _run(request, run, ("diffusion",))
    T = model.config.timesteps
    if method == "ddpm" and steps not in (None, T):
        raise BadRequest(f"steps: expected none (or {T}) for ddpm, which visits every timestep; got {steps} "
                         f"(use ddim for fewer)")
    if steps is not None and steps > T:
        raise BadRequest(f"steps: expected an integer in [1, {T}] (the run's timesteps T), got {steps}")
    visited = T if method == "ddpm" else (steps or min(50, T))
    c = model.config
    # the U-Net's work grows with the pixels and its width: 20,000 image-steps for the 8 x 8
    # digits and 8 base channels (about 3 s on one CPU core), proportionally fewer for more
    most = max(1, MAX_DIFFUSION_WORK * 512 // (c.image_size ** 2 * c.base_channels))
    if n * visited > most:
        raise BadRequest(f"n: expected n x steps <= {most} for this model ({c.image_size} x {c.image_size} images, "
                         f"{c.base_channels} base channels), got {n} x {visited}; use fewer samples or DDIM steps")
    kwargs = {"method": method} if steps is None else {"method": method, "steps": steps}
    with lock:
        images, frames = model.sample(n, generator=_generator(seed), eta=eta, trajectory=True, snapshots=snapshots,
                                      **kwargs)
        ts = model.trajectory_timesteps(snapshots=snapshots, **kwargs)
    return {"run": run, "method": method, "T": T, "steps": visited, "eta": eta, "seed": seed, "timesteps": ts,
            "frames": [_images(f) for f in frames], "images": _images(images),
            "shape": list(images.shape[1:])}


def _plane(model, i: int, j: int) -> int:
    L = model.config.latent_size
    for name, k in (("i", i), ("j", j)):
        if k >= L:
            raise BadRequest(f"{name}: expected a latent coordinate in [0, {L - 1}] (latent_size {L}), got {k}")
    if L >= 2 and i == j:
        raise BadRequest(f"j: expected a coordinate other than i = {i}, got {j}")
    return L


@router.get("/vae/decode")
def vae_decode(request: Request, run: str = Query(..., max_length=200), z: str | None = Query(None, max_length=2000),
               i: int = Query(0, ge=0, le=1023), j: int = Query(1, ge=0, le=1023),
               u: float = Query(0.0, ge=-MAX_SPAN, le=MAX_SPAN), v: float = Query(0.0, ge=-MAX_SPAN, le=MAX_SPAN)
               ) -> dict:
    """sigmoid(f(z)) for one code z (1, L): ``z`` itself, or u e_i + v e_j."""
    model, _, lock = _run(request, run, ("vae",))
    L = model.config.latent_size
    if z is not None:
        try:
            code = [float(s) for s in z.split(",")]
        except ValueError:
            raise BadRequest(f"z: expected {L} comma-separated numbers, got {z[:60]!r}") from None
        if len(code) != L or not all(abs(c) <= MAX_SPAN for c in code):
            raise BadRequest(f"z: expected {L} numbers in [-{MAX_SPAN:g}, {MAX_SPAN:g}], got {len(code)} "
                             f"value(s) {z[:60]!r}")
    else:
        _plane(model, i, j)
        code = [0.0] * L
        code[i] = u
        if L >= 2:
            code[j] = v
    with lock, torch.no_grad():
        zt = torch.tensor([code], dtype=next(model.parameters()).dtype)
        image = torch.sigmoid(model.decode(zt))
    return {"z": code, "image": _images(image)[0], "latent_size": L}


@router.get("/vae/map")
def vae_map(request: Request, run: str = Query(..., max_length=200), i: int = Query(0, ge=0, le=1023),
            j: int = Query(1, ge=0, le=1023), n: int = Query(11, ge=2, le=MAX_GRID),
            span: float = Query(3.0, gt=0.0, le=MAX_SPAN), points: int = Query(300, ge=0, le=MAX_POINTS)) -> dict:
    """The plane z = u e_i + v e_j (other coordinates 0) decoded on an n x n grid, u left to
    right and v bottom to top over [-span, span]; and ``points`` test images' posterior means,
    coordinates i and j."""
    from seqlab.runs import get_family

    model, record, lock = _run(request, run, ("vae",))
    L = _plane(model, i, j)
    values = torch.linspace(-span, span, n, dtype=torch.float64)
    grid = []
    with lock, torch.no_grad():
        dtype = next(model.parameters()).dtype
        codes = torch.zeros(n * n, L, dtype=dtype)
        for r, vv in enumerate(values.flip(0)):  # top row: v = +span
            for c, uu in enumerate(values):
                codes[r * n + c, i] = float(uu)
                if L >= 2:
                    codes[r * n + c, j] = float(vv)
        grid = _images(torch.sigmoid(model.decode(codes)), digits=3)
        means, labels = [], []
        if points:
            data = get_family("vae").data_from_run(record, {})
            test, y = data.images("test")[:points], data.split("test").y[:points]
            mu = model.latent_means(test.to(dtype))
            means = [[float(m[i]), float(m[j]) if L >= 2 else 0.0] for m in mu]
            labels = [int(t) for t in y]
    return {"latent_size": L, "i": i, "j": j if L >= 2 else None, "n": n, "span": span,
            "values": values.tolist(), "grid": grid, "means": means, "labels": labels}


@router.get("/samples")
def samples(request: Request, run: str = Query(..., max_length=200), seed: int = Query(0, ge=0, le=MAX_SEED),
            n: int = Query(16, ge=1, le=MAX_IMAGES)) -> dict:
    """``model.sample(n, generator=torch.Generator().manual_seed(seed))`` of a GAN or VAE run
    (as ``seqlab sample RUN --n N --seed S`` draws them)."""
    model, _, lock = _run(request, run, ("gan", "vae"))
    with lock:
        x = model.sample(n, generator=_generator(seed))
    noise = None
    if hasattr(model, "noise"):  # a GAN: the fixed noise z its images come from
        noise = model.config.noise_size
    return {"run": run, "seed": seed, "images": _images(x), "shape": list(x.shape[1:]), "noise_size": noise}
