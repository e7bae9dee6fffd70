"""The sampling widget: its stream against ``seqlab sample`` and ``seqlab.sample``, its error
paths, a client that disconnects (the generation stops on the server), and the page in a real
browser."""

from __future__ import annotations

import json
import time

import httpx
import pytest

import seqlab
from seqlab.cli import main
from seqlab.testing import one_line_answer

OPTIONS = dict(prompt="def ", length=60, temperature=0.9, top_k=20, top_p=0.9, seed=7)


def read_stream(client, **params) -> list[dict]:
    with client.stream("GET", "/api/sampling/stream", params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


def wait_until_idle(get_status, seconds: float = 5.0) -> dict:
    """/status once no generation is running (fails after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        status = get_status()
        if status["running"] == 0:
            return status
        assert time.monotonic() < deadline, f"generations still running after {seconds} s: {status}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """A second explorer, over one GPT large enough that 1,000 tokens take seconds on a CPU
    (4 layers of width 192, a context of 128: past 128 tokens each step re-reads the whole
    window), so that a test can stop a generation while it certainly still runs. Its URL."""
    from seqlab.explore.app import create_app
    from seqlab.explore.serve import serving

    root = tmp_path_factory.mktemp("slow-runs")
    seqlab.train("gpt", out=root / "big", progress=False, preset="cpu-tiny", d_model=192, num_layers=4,
                 block_size=128, batch_size=1, warmup_steps=1, max_steps=1, eval_every=1, log_every=1,
                 eval_batches=1, device="cpu")
    with serving(create_app(root)) as url:
        yield url


def test_runs_lists_the_families_that_sample_text(client):
    r = client.get("/api/sampling/runs").json()
    assert r["runs"] == [{"name": "gpt", "family": "gpt"}, {"name": "lstm", "family": "charlm"}]
    assert {"gpt", "charlm"} <= set(r["families"]) and not {"bert", "vae", "diffusion"} & set(r["families"])
    assert r["max_length"] == 1000


def test_info(client, runs_dir):
    _, record = seqlab.load(runs_dir / "gpt")
    r = client.get("/api/sampling/info", params={"run": "gpt"}).json()
    assert r["family"] == "gpt" and r["vocab_size"] == record.tokenizer.vocab_size == 103
    assert r["default_prompt"] == "\n"


@pytest.mark.parametrize("run, options", [
    ("gpt", OPTIONS),
    ("lstm", OPTIONS),
    ("gpt", dict(prompt="x = ", length=25, temperature=0.0, seed=1)),  # greedy
    ("lstm", dict(prompt="The ", length=40, temperature=1.3, seed=123456)),
])
def test_stream_gives_the_text_of_seqlab_sample(client, runs_dir, capsys, run, options):
    lines = read_stream(client, run=run, **options)
    start, *pieces, end = lines
    assert start["type"] == "start" and start["seed"] == options["seed"] and end["type"] == "end"
    assert all(p["type"] == "text" for p in pieces) and len(pieces) > 1  # streamed, not sent at once
    text = "".join(p["text"] for p in pieces)
    assert text == end["text"] and len(text) == options["length"]  # characters = tokens here
    # the Python API and the command line give the same text
    assert seqlab.sample(runs_dir / run, **options) == text
    argv = ["sample", str(runs_dir / run)]
    for k, v in options.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out == options["prompt"] + text + "\n" == end["sample"] + "\n"


def test_another_seed_gives_another_text(client):
    a = read_stream(client, run="gpt", **OPTIONS)[-1]["text"]
    b = read_stream(client, run="gpt", **{**OPTIONS, "seed": 8})[-1]["text"]
    assert a != b and len(a) == len(b)


@pytest.mark.parametrize("params, status, words", [
    (dict(run="gpt", prompt="a", length=0), 422, "length: Input should be greater than or equal to 1"),
    (dict(run="gpt", prompt="a", length=1001), 422, "length: Input should be less than or equal to 1000"),
    (dict(run="gpt", prompt="a", length="many"), 422, "length: Input should be a valid integer"),
    (dict(run="gpt", prompt="a", temperature=-0.1), 422, "temperature: Input should be greater than or equal to 0"),
    (dict(run="gpt", prompt="a", temperature=5.5), 422, "temperature: Input should be less than or equal to 5"),
    (dict(run="gpt", prompt="a", temperature="nan"), 422, "temperature: Input should be"),
    (dict(run="gpt", prompt="a", top_k=0), 422, "top_k: Input should be greater than or equal to 1"),
    (dict(run="gpt", prompt="a", top_k=104), 400, "top_k: expected 1 to 103 (the run's vocabulary), got 104"),
    (dict(run="gpt", prompt="a", top_p=0), 422, "top_p: Input should be greater than 0"),
    (dict(run="gpt", prompt="a", top_p=1.5), 422, "top_p: Input should be less than or equal to 1"),
    (dict(run="gpt", prompt="a", seed=-1), 422, "seed: Input should be greater than or equal to 0"),
    (dict(run="gpt", prompt="a", seed=2**31), 422, "seed: Input should be less than or equal to 2147483647"),
    (dict(run="gpt", prompt="a" * 501), 422, "prompt: String should have at most 500 characters"),
    (dict(run="gpt", prompt=""), 422, "prompt: String should have at least 1 character"),
    (dict(run="gpt"), 422, "prompt: Field required"),
    (dict(run="gpt", prompt="\u00e9t\u00e9"), 400, "prompt: expected characters from the tokenizer's"),
    (dict(run="bert", prompt="a"), 400, "a family that samples text (charlm, gpt"),
    (dict(run="vae", prompt="a"), 400, "got 'vae', a 'vae' run"),
    (dict(run="nope", prompt="a"), 404, "expected a run directory (with run.json) below RUNS_DIR"),
    (dict(run="../gpt", prompt="a"), 400, "expected a path below RUNS_DIR"),
    (dict(run="%2e%2e/gpt", prompt="a"), 400, "expected a path below RUNS_DIR"),
    (dict(run="gpt/../../x", prompt="a"), 400, "expected a path below RUNS_DIR"),
])
def test_stream_bad_requests(client, params, status, words):
    r = client.get("/api/sampling/stream", params=params)
    assert words in one_line_answer(r, status)
    assert client.get("/api/sampling/status").json()["running"] == 0  # nothing was started


@pytest.mark.parametrize("params, status, words", [
    (dict(run="bert"), 400, "a family that samples text"),
    (dict(run="../x"), 400, "expected a path below RUNS_DIR"),
    (dict(), 422, "run: Field required"),
])
def test_info_bad_requests(client, params, status, words):
    r = client.get("/api/sampling/info", params=params)
    assert r.status_code == status and words in r.json()["error"]


def test_a_client_that_disconnects_stops_the_generation(slow_server):
    """Read three lines of a 1,000-token stream (seconds of work) and close the connection: the
    server's count of running generations returns to 0, and that generation was cut short."""
    with httpx.Client(base_url=slow_server, timeout=30) as http:
        status = lambda: http.get("/api/sampling/status").json()  # noqa: E731
        wait_until_idle(status)
        # a client that stays reads the stream to its end
        with http.stream("GET", "/api/sampling/stream", params={"run": "big", "prompt": "def ", "length": 30}) as r:
            assert len(json.loads(list(r.iter_lines())[-1])["text"]) == 30
        assert status()["finished"][-1]["cancelled"] is False
        with http.stream("GET", "/api/sampling/stream",
                         params={"run": "big", "prompt": "def ", "length": 1000, "seed": 3}) as r:
            lines = r.iter_lines()
            start = json.loads(next(lines))
            assert json.loads(next(lines))["type"] == "text" and json.loads(next(lines))["type"] == "text"
            assert status()["running"] == 1
            closed = time.monotonic()
        # the response is closed here, mid-stream
        # (a generous wait for a loaded CI machine: what shows the stop is that the generation
        # ended cancelled, well short of its 1,000 tokens)
        after = wait_until_idle(status, seconds=10.0)
        assert time.monotonic() - closed < 10.0
        (mine,) = [g for g in after["finished"] if g["id"] == start["id"]]
        assert mine["cancelled"] is True and mine["requested"] == 1000
        assert 2 <= mine["characters"] < 1000


def test_too_many_generations_at_once_is_429(client, monkeypatch):
    from seqlab.explore import sampling

    client.get("/api/sampling/status")  # the app's counter exists
    g = client.app.state.sampling
    monkeypatch.setattr(g, "running", sampling.MAX_RUNNING)  # as if that many were streaming
    r = client.get("/api/sampling/stream", params={"run": "gpt", "prompt": "a"})
    assert r.status_code == 429 and "at most 4 generations at once" in r.json()["error"]
    monkeypatch.setattr(g, "running", sampling.MAX_RUNNING - 1)
    assert read_stream(client, run="gpt", prompt="a", length=5)[-1]["type"] == "end"


# -- the page in the browser ---------------------------------------------------------------------

def test_sampling_page_streams_the_text_of_the_api(page, runs_dir):
    p = page.open("/w/sampling?run=gpt&prompt=def%20&length=60&temperature=0.9&top_k=20&top_p=0.9&seed=7")
    p.wait_for_function("document.querySelector('#sampling-top-k').max === '103'")
    assert p.locator("#sampling-prompt").input_value() == "def "
    p.click("#sampling-start")
    p.wait_for_function("document.querySelector('#sampling-status').dataset.state === 'done'")
    text = p.locator("#sampling-text").text_content()
    assert text == seqlab.sample(runs_dir / "gpt", **OPTIONS)

    # another seed, set by the controls: the API's text for it
    p.fill("#sampling-seed", "11")
    p.locator("#sampling-temperature").fill("1.2")
    p.locator("#sampling-top-k").fill("0")  # off
    p.locator("#sampling-length").fill("300")
    p.click("#sampling-start")
    p.wait_for_function("document.querySelector('#sampling-status').dataset.state === 'done'")
    assert p.locator("#sampling-text").text_content() == seqlab.sample(
        runs_dir / "gpt", prompt="def ", length=300, temperature=1.2, top_p=0.9, seed=11)
    page.screenshot("sampling")


def test_sampling_page_streams_and_stops(page, slow_server):
    """A 1,000-token generation (seconds of work): the text grows while it streams, Stop ends
    it, and the server's generation stops with it."""
    p = page.page
    p.goto(slow_server + "/w/sampling?run=big&prompt=The%20&length=1000&seed=5")
    p.wait_for_function("document.querySelector('#sampling-top-k').max === '103'")
    p.click("#sampling-start")
    p.wait_for_function("document.querySelector('#sampling-text').textContent.length >= 3")
    first = len(p.locator("#sampling-text").text_content())
    p.wait_for_function(f"document.querySelector('#sampling-text').textContent.length > {first}")
    assert p.locator("#sampling-status").get_attribute("data-state") == "streaming"
    p.click("#sampling-stop")
    p.wait_for_function("document.querySelector('#sampling-status').dataset.state === 'stopped'")
    shown = len(p.locator("#sampling-text").text_content())
    assert first < shown < 1000 and p.locator("#sampling-start").is_enabled()
    with httpx.Client(base_url=slow_server, timeout=10) as http:
        status = wait_until_idle(lambda: http.get("/api/sampling/status").json(), seconds=2.0)
    last = status["finished"][-1]
    assert last["cancelled"] is True and shown <= last["characters"] < 1000
