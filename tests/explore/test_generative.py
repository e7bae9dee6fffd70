"""The generative models widget: the diffusion trajectory, the VAE's latent plane and decoder,
GAN (and VAE) samples, each checked against the model's own methods and ``seqlab sample``,
and the error paths."""

from __future__ import annotations

import math

import pytest
import torch

from seqlab import runs
from seqlab.generative.common import from_signed
from seqlab.testing import one_line_answer


@pytest.fixture(scope="module")
def loaded(runs_dir):
    """The fixture's image runs loaded by the Python API: name -> (model, record)."""
    out = {}
    for name in ("diffusion", "vae", "gan"):
        model, record = runs.load(runs_dir / name)
        model.eval()
        out[name] = (model, record)
    return out



def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_runs_lists_the_image_runs(client):
    got = client.get("/api/generative/runs").json()["runs"]
    assert [(r["name"], r["family"]) for r in got] == [("diffusion", "diffusion"), ("gan", "gan"), ("vae", "vae")]
    sizes = {r["name"]: r for r in got}
    assert sizes["diffusion"]["timesteps"] == 20 and sizes["vae"]["latent_size"] == 8
    assert sizes["gan"]["noise_size"] == 16 and sizes["gan"]["image_size"] == 8


@pytest.mark.parametrize("method,steps,eta,seed", [("ddpm", None, 0.0, 0), ("ddim", 10, 0.0, 3), ("ddim", 20, 0.5, 1)])
def test_diffusion_trajectory_equals_the_model(client, loaded, method, steps, eta, seed):
    model, record = loaded["diffusion"]
    params = {"run": "diffusion", "method": method, "eta": eta, "seed": seed, "n": 3, "snapshots": 21}
    if steps:
        params["steps"] = steps
    r = client.get("/api/generative/diffusion", params=params).json()
    kwargs = {"method": method} if steps is None else {"method": method, "steps": steps}
    visited = model.timestep_sequence(**kwargs)
    assert r["T"] == 20 and r["steps"] == len(visited) and r["timesteps"][0] == 20 and r["timesteps"][-1] == 0
    assert r["timesteps"] == model.trajectory_timesteps(snapshots=21, **kwargs)
    assert len(r["frames"]) == len(r["timesteps"]) and len(r["frames"][0]) == 3
    # x_T is the seeded noise, shown in [0, 1]
    x_T = torch.randn(3, 1, 8, 8, generator=_gen(seed))
    assert r["frames"][0] == from_signed(x_T).clamp(0, 1).tolist()
    # the result is what `seqlab sample diffusion --method M --steps S --seed N` draws
    family = runs.get_family("diffusion")
    options = family.sample_class(n=3, seed=seed, png=None, method=method, steps=steps)
    if eta == 0.0:
        expect = family.sample(model, record, options).images
    else:
        expect = model.sample(3, generator=_gen(seed), method=method, steps=steps, eta=eta)
    assert r["images"] == expect.tolist() and r["frames"][-1] == r["images"]
    # and (DDIM, eta = 0: no noise drawn) every kept step is the loop of ddim_step, at that t
    if method == "ddim" and eta == 0.0:
        x, by_t = x_T.clone(), {20: from_signed(x_T)}
        for k, t in enumerate(visited):
            s = visited[k + 1] if k + 1 < len(visited) else 0
            x = model.ddim_step(x, t, s, 0.0)  # x_t -> x_s
            by_t[s] = from_signed(x)
        for t, frame in zip(r["timesteps"], r["frames"]):
            assert torch.allclose(torch.tensor(frame), by_t[t].clamp(0, 1), atol=1e-6)


def test_diffusion_seed_changes_the_images(client):
    a = client.get("/api/generative/diffusion", params={"run": "diffusion", "seed": 1, "n": 1}).json()
    b = client.get("/api/generative/diffusion", params={"run": "diffusion", "seed": 2, "n": 1}).json()
    assert a["images"] != b["images"]
    assert a == client.get("/api/generative/diffusion", params={"run": "diffusion", "seed": 1, "n": 1}).json()


def test_vae_decode_equals_the_decoder(client, loaded):
    model, _ = loaded["vae"]
    r = client.get("/api/generative/vae/decode", params={"run": "vae", "i": 2, "j": 5, "u": 1.5, "v": -0.75}).json()
    z = torch.zeros(1, 8)
    z[0, 2], z[0, 5] = 1.5, -0.75
    assert r["z"] == z[0].tolist() and r["latent_size"] == 8
    with torch.no_grad():
        assert r["image"] == torch.sigmoid(model.decode(z))[0].tolist()
    code = [0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 2.0, 0.5]
    r = client.get("/api/generative/vae/decode", params={"run": "vae", "z": ",".join(map(str, code))}).json()
    with torch.no_grad():
        assert r["image"] == torch.sigmoid(model.decode(torch.tensor([code])))[0].tolist()


def test_vae_map_is_the_decoded_plane_and_the_test_means(client, loaded):
    model, record = loaded["vae"]
    r = client.get("/api/generative/vae/map", params={"run": "vae", "i": 1, "j": 4, "n": 5, "span": 2.0,
                                                      "points": 50}).json()
    assert r["values"] == [-2.0, -1.0, 0.0, 1.0, 2.0] and len(r["grid"]) == 25
    for row, v in enumerate([2.0, 1.0, 0.0, -1.0, -2.0]):  # the top row is v = +span
        for col, u in enumerate(r["values"]):
            z = torch.zeros(1, 8)
            z[0, 1], z[0, 4] = u, v
            with torch.no_grad():
                want = torch.sigmoid(model.decode(z))[0]
            got = torch.tensor(r["grid"][row * 5 + col], dtype=torch.float64)
            assert torch.allclose(got, want.double(), atol=5e-4 + 1e-9)  # rounded to 3 decimals
    data = runs.get_family("vae").data_from_run(record, {})
    mu = model.latent_means(data.images("test")[:50])
    assert torch.allclose(torch.tensor(r["means"], dtype=torch.float64), mu[:, [1, 4]].double(), atol=1e-6)
    assert r["labels"] == data.split("test").y[:50].tolist()
    assert client.get("/api/generative/vae/map", params={"run": "vae", "points": 0}).json()["means"] == []


@pytest.mark.parametrize("name", ["gan", "vae"])
def test_samples_equal_seqlab_sample(client, loaded, name):
    model, record = loaded[name]
    family = runs.get_family(name)
    for seed in (0, 7):
        r = client.get("/api/generative/samples", params={"run": name, "seed": seed, "n": 6}).json()
        want = family.sample(model, record, family.sample_class(n=6, seed=seed, png=None)).images
        assert r["images"] == want.tolist() == model.sample(6, generator=_gen(seed)).tolist()
        assert r["shape"] == [1, 8, 8]
    assert r["noise_size"] == (16 if name == "gan" else None)
    other = client.get("/api/generative/samples", params={"run": name, "seed": 1, "n": 6}).json()
    assert other["images"] != r["images"]


@pytest.mark.parametrize("path,params,status,words", [
    ("/api/generative/diffusion", {"run": "gan"}, 400, "expected a diffusion run, got 'gan'"),
    ("/api/generative/diffusion", {"run": "nope"}, 404, "expected a run directory"),
    ("/api/generative/diffusion", {"run": "../x"}, 400, "below RUNS_DIR"),
    ("/api/generative/diffusion", {"run": "%2e%2e/x"}, 400, "below RUNS_DIR"),
    ("/api/generative/diffusion", {"run": "x" * 201}, 422, "run"),
    ("/api/generative/diffusion", {"run": "diffusion", "n": 17}, 422, "n"),
    ("/api/generative/diffusion", {"run": "diffusion", "snapshots": 1}, 422, "snapshots"),
    ("/api/generative/diffusion", {"run": "diffusion", "snapshots": 102}, 422, "snapshots"),
    ("/api/generative/diffusion", {"run": "diffusion", "method": "euler"}, 422, "method"),
    ("/api/generative/diffusion", {"run": "diffusion", "method": "ddim", "steps": 21}, 400, "[1, 20]"),
    ("/api/generative/diffusion", {"run": "diffusion", "method": "ddpm", "steps": 10}, 400, "use ddim"),
    ("/api/generative/diffusion", {"run": "diffusion", "steps": 0}, 422, "steps"),
    ("/api/generative/diffusion", {"run": "diffusion", "eta": 2}, 422, "eta"),
    ("/api/generative/diffusion", {"run": "diffusion", "seed": -1}, 422, "seed"),
    ("/api/generative/diffusion", {"run": "diffusion", "seed": "abc"}, 422, "seed"),
    ("/api/generative/vae/decode", {"run": "gan"}, 400, "expected a vae run"),
    ("/api/generative/vae/decode", {"run": "vae", "i": 8}, 400, "[0, 7]"),
    ("/api/generative/vae/decode", {"run": "vae", "i": 3, "j": 3}, 400, "other than i = 3"),
    ("/api/generative/vae/decode", {"run": "vae", "u": 11}, 422, "u"),
    ("/api/generative/vae/decode", {"run": "vae", "z": "1,2"}, 400, "expected 8 numbers"),
    ("/api/generative/vae/decode", {"run": "vae", "z": "1,2,3,4,5,6,7,x"}, 400, "comma-separated numbers"),
    ("/api/generative/vae/decode", {"run": "vae", "z": "1,2,3,4,5,6,7,99"}, 400, "[-10, 10]"),
    ("/api/generative/vae/decode", {"run": "vae", "z": "1,2,3,4,5,6,7,nan"}, 400, "[-10, 10]"),
    ("/api/generative/vae/decode", {"run": "vae", "z": "1," * 1001}, 422, "z"),
    ("/api/generative/vae/map", {"run": "vae", "n": 16}, 422, "n"),
    ("/api/generative/vae/map", {"run": "vae", "span": 0}, 422, "span"),
    ("/api/generative/vae/map", {"run": "vae", "points": 1001}, 422, "points"),
    ("/api/generative/vae/map", {"run": "vae", "j": 9}, 400, "[0, 7]"),
    ("/api/generative/vae/map", {"run": "diffusion"}, 400, "expected a vae run"),
    ("/api/generative/samples", {"run": "diffusion"}, 400, "expected a gan or vae run"),
    ("/api/generative/samples", {"run": "gpt"}, 400, "expected a gan or vae run"),
    ("/api/generative/samples", {"run": "gan", "n": 17}, 422, "n"),
    ("/api/generative/samples", {"run": "gan", "n": 0}, 422, "n"),
    ("/api/generative/samples", {}, 422, "run"),
])
def test_bad_requests(client, path, params, status, words):
    assert words in one_line_answer(client.get(path, params=params), status)


def test_diffusion_work_is_capped(client, monkeypatch):
    from seqlab.explore import generative

    monkeypatch.setattr(generative, "MAX_DIFFUSION_WORK", 30)
    msg = one_line_answer(client.get("/api/generative/diffusion", params={"run": "diffusion", "method": "ddpm", "n": 2}), 400)
    assert "n x steps <= 30" in msg and "2 x 20" in msg


# ---- the browser

def _greys(p, canvas: str, k: int):
    """The grey level drawn at the centre of every pixel of image k of a canvas (row-major)."""
    return p.evaluate("""([id, k]) => {
      const c = document.getElementById(id), ctx = c.getContext("2d");
      const s = Number(c.dataset.scale), gap = Number(c.dataset.gap), cols = Number(c.dataset.cols);
      const out = [];
      for (let r = 0; r < 8; r++) for (let q = 0; q < 8; q++) {
        const x = (k % cols) * (8 * s + gap) + q * s + Math.floor(s / 2);
        const y = Math.floor(k / cols) * (8 * s + gap) + r * s + Math.floor(s / 2);
        out.push(ctx.getImageData(x, y, 1, 1).data[0]);
      }
      return out;
    }""", [canvas, k])


def _expected_greys(image: torch.Tensor):
    """Math.round(255 (1 - v)) of a (1, 8, 8) image: ink dark, as the page draws it."""
    return [math.floor(255 * (1 - float(v)) + 0.5) for v in image.clamp(0, 1).reshape(-1)]


def test_diffusion_in_the_browser(page, loaded):
    from playwright.sync_api import expect

    model, _ = loaded["diffusion"]
    p = page.open("/w/generative?run=diffusion")
    expect(p.locator("#gen-family")).to_have_text("diffusion: diffusion")
    expect(p.locator("#gen-t")).to_have_text("t = 20")
    expect(p.locator("#gen-visited")).to_have_text("20 denoising steps of T = 20")
    x_T = from_signed(torch.randn(4, 1, 8, 8, generator=_gen(0)))
    assert _greys(p, "gen-frame-images", 2) == _expected_greys(x_T[2])
    p.locator("#gen-frame").fill("20")  # scrub to the end: x_0
    expect(p.locator("#gen-t")).to_have_text("t = 0")
    x0 = model.sample(4, generator=_gen(0), method="ddim", steps=20)
    for k in range(4):
        assert _greys(p, "gen-frame-images", k) == _expected_greys(x0[k])
    p.locator("#gen-frame").fill("10")
    t = model.trajectory_timesteps(method="ddim", steps=20, snapshots=21)[10]
    expect(p.locator("#gen-t")).to_have_text(f"t = {t}")
    page.screenshot("generative")
    # fewer DDIM steps: 5 denoising steps, so 6 kept states
    p.locator("#gen-steps").fill("5")
    expect(p.locator("#gen-visited")).to_have_text("5 denoising steps of T = 20")
    expect(p.locator("#gen-frame")).to_have_attribute("max", "5")
    p.select_option("#gen-method", "ddpm")
    expect(p.locator("#gen-visited")).to_have_text("20 denoising steps of T = 20")
    p.locator("#gen-frame").fill("20")
    expect(p.locator("#gen-t")).to_have_text("t = 0")
    x0 = model.sample(4, generator=_gen(0), method="ddpm")
    assert _greys(p, "gen-frame-images", 0) == _expected_greys(x0[0])


def test_vae_in_the_browser(page, loaded):
    from playwright.sync_api import expect

    model, _ = loaded["vae"]
    p = page.open("/w/generative?run=vae")
    expect(p.locator("#gen-plane")).to_contain_text("L = 8 dimensions: this map is the plane z = u e_0 + v e_1")
    expect(p.locator("#gen-z")).to_have_text("z = (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00)")
    p.select_option("#gen-j", "3")
    expect(p.locator("#gen-plane")).to_contain_text("z = u e_0 + v e_3")
    p.locator("#gen-map").click(position={"x": 60, "y": 380})  # left and low: u < 0, v < 0
    expect(p.locator("#gen-z")).not_to_have_text("z = (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00)")
    u, v = float(p.locator("#gen-z").get_attribute("data-u")), float(p.locator("#gen-z").get_attribute("data-v"))
    assert u < -1 and v < -1
    # the click's position on the map: x = (u + span)/(2 span) (size - cell) + cell/2, size 440, cell 40
    px = 6 / 400  # one pixel of the map, in units of z (the click lands within a pixel)
    assert u == pytest.approx((60 - 20) * px - 3, abs=px) and v == pytest.approx(3 - (380 - 20) * px, abs=px)
    z = torch.zeros(1, 8)
    z[0, 0], z[0, 3] = u, v
    with torch.no_grad():
        want = torch.sigmoid(model.decode(z))[0]
    assert _greys(p, "gen-decoded", 0) == _expected_greys(want)
    expect(p.locator("#gen-samples")).to_be_visible()


def test_gan_in_the_browser(page, loaded):
    from playwright.sync_api import expect

    model, _ = loaded["gan"]
    p = page.open("/w/generative")
    p.select_option("#gen-run", "gan")
    expect(p.locator("#gen-samples-info")).to_have_text("16 samples, seed 0")
    x = model.sample(16, generator=_gen(0))
    for k in (0, 9, 15):
        assert _greys(p, "gen-samples", k) == _expected_greys(x[k])
    p.fill("#gen-sample-seed", "5")
    p.dispatch_event("#gen-sample-seed", "change")
    expect(p.locator("#gen-samples-info")).to_have_text("16 samples, seed 5")
    x = model.sample(16, generator=_gen(5))
    for k in (0, 15):
        assert _greys(p, "gen-samples", k) == _expected_greys(x[k])
    page.screenshot("generative-gan")


@pytest.fixture(scope="module")
def trained_vae_server(tmp_path_factory):
    """A VAE with a 2-D latent space trained for 600 steps (a second or two), served on its own:
    its latent map shows the digits (the fixture's 4-step runs are still noise)."""
    import seqlab
    from seqlab.explore.app import create_app
    from seqlab.explore.serve import serving

    root = tmp_path_factory.mktemp("trained")
    seqlab.train("vae", out=root / "vae2", progress=False, preset="cpu-tiny", latent_size=2, batch_size=64,
                 max_steps=600, eval_every=600, log_every=100, eval_batches=1, lr=3e-3, device="cpu")
    with serving(create_app(root)) as url:
        yield url, root


def test_trained_2d_vae_in_the_browser(browser, trained_vae_server, tmp_path):
    import os
    from pathlib import Path

    from playwright.sync_api import expect

    from .conftest import Page

    base, root = trained_vae_server
    model, _ = runs.load(root / "vae2")
    model.eval()
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = Page(context.new_page(), base, Path(os.environ.get("SEQLAB_SCREENSHOTS") or tmp_path))
    try:
        p = page.open("/w/generative")
        expect(p.locator("#gen-plane")).to_contain_text("The whole latent space (L = 2): z = (u, v)")
        expect(p.locator("#gen-plane")).to_contain_text("posterior means mu(x) of 300 test images")
        p.locator("#gen-map").click(position={"x": 330, "y": 110})  # right and high: u > 0, v > 0
        expect(p.locator("#gen-z")).not_to_have_text("z = (0.00, 0.00)")
        u, v = float(p.locator("#gen-z").get_attribute("data-u")), float(p.locator("#gen-z").get_attribute("data-v"))
        assert u > 1 and v > 1
        with torch.no_grad():
            want = torch.sigmoid(model.decode(torch.tensor([[u, v]])))[0]
        assert _greys(p, "gen-decoded", 0) == _expected_greys(want)
        page.screenshot("generative-vae")
    finally:
        context.close()
    assert not page.errors, "the page logged errors: " + " | ".join(page.errors)
