"""Load on ``seqlab explore``: mixed requests from concurrent clients against a real local server.

    python benchmarks/bench_explore.py                  # 1,000 requests, 8 clients (a few minutes on 2 cores)
    python benchmarks/bench_explore.py --quick          # 60 requests, 4 clients; writes to /tmp unless --out
    python benchmarks/bench_explore.py --requests 300 --clients 4 --runs-dir runs   # an existing RUNS_DIR

Method. The benchmark trains one tiny run of each family the widgets show (gpt, bert, lstm,
diffusion, vae, gan: the sizes of tests/explore/conftest.py, a few seconds each) into a
temporary RUNS_DIR, starts the explorer as a user does (``python -m seqlab explore RUNS_DIR
--port P`` in a subprocess: uvicorn, one process) and waits until it answers. It then plans
the requests from the table ``MIX`` of (endpoint, weight, request maker): one request of every
row first, the rest drawn by weight, all shuffled, each with parameters drawn from a seeded
generator (sequence lengths, cells, texts, seeds, images ...), so the plan is the same on
every run. ``--clients`` threads, each with its own ``httpx.Client``, take the planned
requests in turn until none is left; each request's latency is the time from sending it to
reading its whole answer. A streamed sample (``/api/sampling/stream``) is read to its last
line, and its latency to the first token is recorded too; like the widget page, which runs
one generation at a time, the clients together never stream more than the server's limit
(``sampling.MAX_RUNNING``) at once, since the server answers 429 beyond it by design.

About 5 % of the requests are deliberately bad (out-of-range numbers, a wrong family, path
traversal in run names and static paths, text too long ...): each must get its expected 4xx
status and a one-line JSON error. An error is any other answer: a non-2xx status for a good
request, a status other than the expected one for a bad request, an exception (timeout,
refused connection), a stream that does not end with its ``end`` line. The benchmark also
lists the server's API routes (its OpenAPI schema) that no row of the mix requests.

Writes ``benchmarks/results/explore_load.{md,json}`` (or ``--out DIR``): the machine and its
load average (the machine may be shared), the command, the table (endpoint, requests,
errors, p50 and p99 latency in ms) and the throughput. Exits 1 if there was any error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402

from bench_recurrent_speed import machine_with_load  # noqa: E402

from seqlab.explore.serve import TINY_RUNS, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STATIC = ROOT / "seqlab" / "explore" / "static"
QUICK = dict(requests=60, clients=4)
FULL = dict(requests=1000, clients=8)
TIMEOUT_S = 120.0  # one request; the slowest take about a second on an idle laptop
START_TIMEOUT_S = 120.0  # the server's start (imports torch, FastAPI)


# short texts of the runs' corpus (Python source; character vocabulary, block_size 16)
TEXTS = ["def f(x):", "return x + 1", "import os", "for i in range(", "class A:", "if x is None:",
         "print(x)", "self.x = x", "while True:", "try:", "x = [1, 2]", "return None"]
EQUATIONS = [
    r"a_{%(t)d} = g(w^{(x)} x_{%(t)d} + w^{(a)} a_{%(s)d} + b^{(a)})",
    r"\frac{\partial C}{\partial a_{%(t)d}} = "
    r"\frac{\partial C}{\partial a_{%(u)d}} \frac{\partial a_{%(u)d}}{\partial a_{%(t)d}}",
    r"p_i = \frac{\exp(z_i / \tau)}{\sum_j \exp(z_j / \tau)},\quad k = %(t)d",
    r"E = -\frac{1}{2} \sum_{i,j} w_{ij} a_i a_j - \sum_i b_i a_i,\quad N = %(u)d",
    r"x_{t-1} = \frac{1}{\sqrt{\alpha_t}} "
    r"\left(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}} \epsilon(x_t, t)\right),\quad t = %(t)d",
    r"\mathrm{softmax}\left(\frac{Q K^T}{\sqrt{m}}\right) V,\quad m = %(u)d",
]


# ---------------------------------------------------------------------------------------------
# the requests


@dataclass
class Req:
    """One planned request: ``expect`` is the status a good answer has (None: any 2xx)."""

    endpoint: str
    method: str
    url: str
    params: dict | None = None
    body: dict | None = None
    expect: int | None = None
    stream: bool = False


@dataclass
class Context:
    """What the request makers need to know of the server: run names by family, the digit
    prototypes, the static files, whether a tour report exists, the sampling limit, the
    attention runs' layers and heads, the diffusion runs' timesteps."""

    runs: dict[str, list[str]]
    digits: dict[int, list[int]]
    static: list[str]
    widgets: list[str]
    report: bool
    max_running: int = 4
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # attention run -> (layers, heads)
    timesteps: dict[str, int] = field(default_factory=dict)  # diffusion run -> T

    def run(self, rng: random.Random, *families: str) -> str:
        return rng.choice([name for f in families for name in self.runs.get(f, [])])


def _opt(rng: random.Random, p: float, value):
    """``value`` with probability p, else None (a parameter left to its default)."""
    return value if rng.random() < p else None


def _params(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def _corrupt(rng: random.Random, pattern: list[int], noise: float) -> list[int]:
    flips = set(rng.sample(range(len(pattern)), round(noise * len(pattern))))
    return [-v if i in flips else v for i, v in enumerate(pattern)]


def _stored(rng: random.Random, ctx: Context) -> dict:
    digits = sorted(rng.sample(sorted(ctx.digits), rng.randint(2, 5)))
    return {"digits": digits, "rule": rng.choice(["hebbian", "pseudo-inverse", "storkey"])}


def _state(rng: random.Random, ctx: Context, digits: list[int]) -> list[int]:
    return _corrupt(rng, ctx.digits[rng.choice(digits)], rng.uniform(0.05, 0.3))


def _equation(rng: random.Random) -> str:
    t = rng.randint(1, 20)
    return rng.choice(EQUATIONS) % {"t": t, "s": t - 1, "u": t + rng.randint(1, 9)}


def _unfold(rng, ctx):
    from seqlab.recurrent.unfold import valid_wrt

    layers = rng.choice([1, 1, 1, 2, 3])
    return Req("GET /api/unfold", "GET", "/api/unfold", _params(
        T=rng.randint(1, 20), output=rng.choice(["last", "sequence"]), layers=layers,
        wrt=rng.choice(valid_wrt(layers))))


def _gradflow(rng, ctx):
    clipping = rng.random() < 0.3
    return Req("GET /api/gradflow", "GET", "/api/gradflow", _params(
        cell=rng.choice(["rnn", "lstm", "gru"]), scale=round(rng.uniform(0.5, 2.5), 2), T=rng.choice([20, 50, 80, 120]),
        seed=_opt(rng, 0.3, rng.randint(0, 99)), clipping=str(clipping).lower(),
        clip=round(rng.uniform(0.5, 5), 2) if clipping else None))


def _attention_maps(rng, ctx):
    run = ctx.run(rng, "gpt", "bert")
    layers, heads = ctx.shapes[run]
    text = rng.choice(TEXTS)
    if run in ctx.runs.get("bert", []) and rng.random() < 0.5:
        k = rng.randrange(len(text))
        text = (text[:k] + "[MASK]" + text[k + 1:])[:15]
    return Req("GET /api/attention/maps", "GET", "/api/attention/maps", _params(
        run=run, text=text, layer=rng.randint(1, layers), head=rng.choice([0, 0, rng.randint(1, heads)]),
        causal=_opt(rng, 0.3, rng.choice(["true", "false"])), top=_opt(rng, 0.5, rng.randint(1, 20))))


def _sampling_stream(rng, ctx):
    return Req("GET /api/sampling/stream", "GET", "/api/sampling/stream", _params(
        run=ctx.run(rng, "gpt", "charlm"), prompt=rng.choice(TEXTS), length=rng.randint(20, 80),
        temperature=round(rng.uniform(0.3, 1.5), 2), top_k=_opt(rng, 0.4, rng.randint(1, 20)),
        top_p=_opt(rng, 0.4, round(rng.uniform(0.5, 1.0), 2)), seed=rng.randint(0, 10_000)), stream=True)


def _hopfield_start(rng, ctx):
    digit = rng.choice(sorted(ctx.digits))
    return Req("POST /api/hopfield/start", "POST", "/api/hopfield/start", body=_params(
        side=8, pattern=ctx.digits[digit], noise=round(rng.uniform(0, 0.4), 2),
        occlude=_opt(rng, 0.3, rng.choice(["top", "bottom", "left", "right"])), seed=rng.randint(0, 10_000)))


def _hopfield_step(rng, ctx):
    stored = _stored(rng, ctx)
    return Req("POST /api/hopfield/step", "POST", "/api/hopfield/step", body=dict(
        stored, state=_state(rng, ctx, stored["digits"]), seed=rng.randint(0, 10_000), offset=rng.randint(0, 1),
        position=rng.choice([0, 0, rng.randint(0, 300)]), steps=rng.choice([1, 1, 8, 64]),
        until_fixed=rng.random() < 0.2))


def _hopfield_compare(rng, ctx):
    stored = _stored(rng, ctx)
    return Req("POST /api/hopfield/compare", "POST", "/api/hopfield/compare", body=dict(
        stored, state=_state(rng, ctx, stored["digits"]), seed=rng.randint(0, 10_000), offset=rng.randint(0, 1)))


def _diffusion(rng, ctx):
    method = rng.choice(["ddim", "ddim", "ddpm"])
    run = ctx.run(rng, "diffusion")
    T = ctx.timesteps[run]
    return Req("GET /api/generative/diffusion", "GET", "/api/generative/diffusion", _params(
        run=run, method=method, steps=rng.randint(min(5, T), min(20, T)) if method == "ddim" else None,
        eta=_opt(rng, 0.3, round(rng.random(), 2)) if method == "ddim" else None, seed=rng.randint(0, 10_000),
        n=rng.randint(1, 4), snapshots=rng.choice([5, 11, 21])))


def _vae_decode(rng, ctx):
    return Req("GET /api/generative/vae/decode", "GET", "/api/generative/vae/decode", _params(
        run=ctx.run(rng, "vae"), u=round(rng.uniform(-3, 3), 2), v=round(rng.uniform(-3, 3), 2)))


def _vae_map(rng, ctx):
    return Req("GET /api/generative/vae/map", "GET", "/api/generative/vae/map", _params(
        run=ctx.run(rng, "vae"), n=rng.choice([7, 11, 15]), span=rng.choice([2.0, 3.0]),
        points=rng.choice([0, 100, 300])))


def _samples(rng, ctx):
    return Req("GET /api/generative/samples", "GET", "/api/generative/samples", _params(
        run=ctx.run(rng, "gan", "vae"), seed=rng.randint(0, 10_000), n=rng.choice([4, 8, 16])))


def _get(endpoint: str, url: str | None = None, **params) -> Callable:
    return lambda rng, ctx: Req(endpoint, "GET", url or endpoint.split(" ", 1)[1], params or None)


def _bad(endpoint: str, status: int, method: str, url: str, params=None, body=None) -> Callable:
    """A deliberately bad request that must get ``status``; ``params`` may be a function of
    the context (to name one of its runs)."""
    return lambda rng, ctx: Req(endpoint, method, url, params(ctx) if callable(params) else params, body,
                                expect=status)


def _report(rng, ctx):
    # a RUNS_DIR without a tour report answers 404 here, by design
    return Req("GET /api/runs/report", "GET", "/api/runs/report", expect=None if ctx.report else 404)


# (endpoint, weight, request maker, bad): the mix. A new endpoint is one more row.
MIX: list[tuple[str, float, Callable, bool]] = [
    ("GET /", 2, _get("GET /"), False),
    ("GET /w/{widget}", 6, lambda rng, ctx: Req("GET /w/{widget}", "GET", f"/w/{rng.choice(ctx.widgets)}"), False),
    ("GET /static/{file}", 8, lambda rng, ctx: Req("GET /static/{file}", "GET", f"/static/{rng.choice(ctx.static)}"),
     False),
    ("GET /api/equation.svg", 8, lambda rng, ctx: Req("GET /api/equation.svg", "GET", "/api/equation.svg",
                                                      {"tex": _equation(rng)}), False),
    ("GET /api/unfold", 8, _unfold, False),
    ("GET /api/gradflow", 7, _gradflow, False),
    ("GET /api/attention/runs", 1, _get("GET /api/attention/runs"), False),
    ("GET /api/attention/maps", 8, _attention_maps, False),
    ("GET /api/sampling/runs", 1, _get("GET /api/sampling/runs"), False),
    ("GET /api/sampling/info", 2, lambda rng, ctx: Req("GET /api/sampling/info", "GET", "/api/sampling/info",
                                                       {"run": ctx.run(rng, "gpt", "charlm")}), False),
    ("GET /api/sampling/status", 1, _get("GET /api/sampling/status"), False),
    ("GET /api/sampling/stream", 5, _sampling_stream, False),
    ("GET /api/hopfield/patterns", 1, lambda rng, ctx: Req("GET /api/hopfield/patterns", "GET",
                                                           "/api/hopfield/patterns", _params(digits=rng.choice(
                                                               [None, "0,1,2", "3,5,8"]))), False),
    ("POST /api/hopfield/start", 4, _hopfield_start, False),
    ("POST /api/hopfield/step", 7, _hopfield_step, False),
    ("POST /api/hopfield/compare", 2, _hopfield_compare, False),
    ("GET /api/generative/runs", 1, _get("GET /api/generative/runs"), False),
    ("GET /api/generative/diffusion", 3, _diffusion, False),
    ("GET /api/generative/vae/decode", 5, _vae_decode, False),
    ("GET /api/generative/vae/map", 2, _vae_map, False),
    ("GET /api/generative/samples", 3, _samples, False),
    ("GET /api/runs/list", 2, _get("GET /api/runs/list"), False),
    ("GET /api/runs/run", 3, lambda rng, ctx: Req("GET /api/runs/run", "GET", "/api/runs/run",
                                                  {"run": ctx.run(rng, *ctx.runs)}), False),
    ("GET /api/runs/report", 1, _report, False),
    # deliberately bad requests (about 5 % of the weight): each must get its 4xx
    ("bad: unfold T = 21", 0.5, _bad("bad: unfold T = 21", 422, "GET", "/api/unfold", {"T": 21}), True),
    ("bad: gradflow scale = 10", 0.5, _bad("bad: gradflow scale = 10", 422, "GET", "/api/gradflow", {"scale": 10}),
     True),
    ("bad: run ../x", 0.5, _bad("bad: run ../x", 400, "GET", "/api/runs/run", {"run": "../x"}), True),
    ("bad: run %2e%2e/x", 0.5, _bad("bad: run %2e%2e/x", 400, "GET", "/api/attention/maps?run=%2e%2e/x&text=ab"),
     True),
    ("bad: static %2e%2e/", 0.5, _bad("bad: static %2e%2e/", 404, "GET", "/static/%2e%2e/app.py"), True),
    ("bad: widget %2e%2e%2f", 0.3, _bad("bad: widget %2e%2e%2f", 404, "GET", "/w/%2e%2e%2f%2e%2e%2fapp.py"), True),
    ("bad: unknown run", 0.3, _bad("bad: unknown run", 404, "GET", "/api/generative/samples", {"run": "nope"}), True),
    ("bad: wrong family", 0.3, _bad("bad: wrong family", 400, "GET", "/api/generative/vae/decode",
                                     lambda ctx: {"run": ctx.runs["gan"][0]}),
     True),
    ("bad: text too long", 0.3, _bad("bad: text too long", 422, "GET", "/api/attention/maps",
                                     lambda ctx: {"run": ctx.runs["gpt"][0], "text": "x" * 401}), True),
    ("bad: stream length", 0.3, _bad("bad: stream length", 422, "GET", "/api/sampling/stream",
                                     lambda ctx: {"run": ctx.runs["gpt"][0], "prompt": "def", "length": 100_000}),
     True),
    ("bad: hopfield state", 0.3, _bad("bad: hopfield state", 400, "POST", "/api/hopfield/step",
                                      body={"digits": [0, 1], "state": [1, -1, 1]}), True),
]
BAD_SHARE = sum(w for _, w, _, bad in MIX if bad) / sum(w for _, w, _, _ in MIX)


def plan(ctx: Context, requests: int, seed: int = 0) -> list[Req]:
    """One request of every row of ``MIX``, then ``requests - len(MIX)`` drawn by weight, all
    shuffled; each with parameters drawn from ``random.Random(seed)``."""
    if requests < len(MIX):
        raise ValueError(f"--requests: expected at least {len(MIX)} (one per endpoint of the mix), got {requests}")
    rng = random.Random(seed)
    rows = list(MIX) + rng.choices(MIX, weights=[r[1] for r in MIX], k=requests - len(MIX))
    rng.shuffle(rows)
    return [maker(rng, ctx) for _, _, maker, _ in rows]


# ---------------------------------------------------------------------------------------------
# the clients


@dataclass
class Outcome:
    endpoint: str
    status: int | None
    seconds: float
    ok: bool
    bad: bool  # a deliberately bad request
    first_token_s: float | None = None
    error: str | None = None


def _read_stream(client: httpx.Client, req: Req, started: float) -> tuple[int, float | None, str | None]:
    """Read a sampling stream to its end; (status, seconds to the first text line, error)."""
    first = None
    last = None
    with client.stream(req.method, req.url, params=req.params) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, None, f"{r.status_code}: {r.text[:120]}"
        for line in r.iter_lines():
            if not line:
                continue
            last = json.loads(line)
            if last.get("type") == "text" and first is None:
                first = time.perf_counter() - started
    if not last or last.get("type") != "end":
        return 200, first, f"the stream ended with {json.dumps(last)[:120]}, not its end line"
    return 200, first, None


def one_request(client: httpx.Client, req: Req, streams: threading.Semaphore) -> Outcome:
    """Send ``req`` and read its whole answer; an Outcome with its latency and verdict."""
    bad = req.expect is not None and req.expect >= 400
    status, first, error = None, None, None
    if req.stream:
        streams.acquire()  # the clients never stream more at once than the server allows
    started = time.perf_counter()
    try:
        if req.stream:
            status, first, error = _read_stream(client, req, started)
        else:
            r = client.request(req.method, req.url, params=req.params, json=req.body)
            status = r.status_code
            body = r.content
            if req.expect is None:
                if not 200 <= status < 300:
                    error = f"{status}: {body[:160].decode(errors='replace')}"
            elif status != req.expect:
                error = f"expected {req.expect}, got {status}: {body[:160].decode(errors='replace')}"
            elif status >= 400:
                message = r.json().get("error", "")
                if not message or "\n" in message or "Traceback" in message:
                    error = f"{status} without a one-line error: {body[:160].decode(errors='replace')}"
    except Exception as e:  # noqa: BLE001 - every failure is counted, with its one line
        error = f"{type(e).__name__}: {str(e)[:160]}"
    finally:
        seconds = time.perf_counter() - started
        if req.stream:
            streams.release()
    return Outcome(req.endpoint, status, seconds, error is None, bad, first, error)


def send(base_url: str, requests: list[Req], clients: int, max_streams: int = 4) -> tuple[list[Outcome], float]:
    """``clients`` threads, each with its own httpx.Client, send ``requests`` in turn; the
    outcomes (in the order they finished) and the wall-clock seconds."""
    queue = list(reversed(requests))
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    streams = threading.Semaphore(max_streams)

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=TIMEOUT_S) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    req = queue.pop()
                out = one_request(client, req, streams)
                with lock:
                    outcomes.append(out)

    threads = [threading.Thread(target=worker, name=f"client-{k}") for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# the server, the context, the statistics


def discover(base_url: str) -> Context:
    """Ask the server what the request makers need: runs by family, digit prototypes, the
    static files, the widgets, whether a tour report exists, the sampling limit."""
    from seqlab.explore.app import WIDGETS
    from seqlab.explore.sampling import MAX_RUNNING

    with httpx.Client(base_url=base_url, timeout=TIMEOUT_S) as c:
        listed = c.get("/api/runs/list").raise_for_status().json()
        digits = c.get("/api/hopfield/patterns").raise_for_status().json()
        shapes = {}
        for r in c.get("/api/attention/runs").raise_for_status().json()["runs"]:
            m = c.get("/api/attention/maps", params={"run": r["name"], "text": "x"}).raise_for_status().json()
            shapes[r["name"]] = (m["num_layers"], m["num_heads"])
        timesteps = {r["name"]: r["timesteps"] for r in c.get("/api/generative/runs").raise_for_status().json()["runs"]
                     if r["family"] == "diffusion"}
    runs: dict[str, list[str]] = defaultdict(list)
    for r in listed["runs"]:
        if r.get("family"):
            runs[r["family"]].append(r["name"])
    needed = {"gpt", "bert", "charlm", "diffusion", "vae", "gan"}  # charlm: the lstm run
    if not needed <= set(runs):
        raise ValueError(f"RUNS_DIR: expected runs of the families {sorted(needed)}, got {sorted(runs)}")
    static = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css"))
    return Context(runs=dict(runs), digits=dict(zip(digits["digits"], digits["patterns"])), static=static,
                   widgets=[w for w, _, _ in WIDGETS], report=listed.get("report") is not None,
                   max_running=MAX_RUNNING, shapes=shapes, timesteps=timesteps)


def uncovered(base_url: str) -> list[str]:
    """The server's API routes (method and path, from its OpenAPI schema) that no row of MIX requests."""
    with httpx.Client(base_url=base_url, timeout=TIMEOUT_S) as c:
        schema = c.get("/api/openapi.json").raise_for_status().json()
    mixed = {name for name, *_ in MIX}
    routes = [f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops]
    return sorted(r for r in routes if r not in mixed)


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (q in (0, 100])."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summarize(outcomes: list[Outcome], wall_s: float) -> dict:
    """The table (per endpoint: requests, errors, p50/p99 ms; streams: to the first token
    too) and the totals."""
    by: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by[o.endpoint].append(o)
    order = {name: k for k, (name, *_) in enumerate(MIX)}
    rows = []
    for name in sorted(by, key=lambda n: order.get(n, len(order))):
        group = by[name]
        ms = [1000 * o.seconds for o in group]
        firsts = [1000 * o.first_token_s for o in group if o.first_token_s is not None]
        row = {"endpoint": name, "requests": len(group), "errors": sum(not o.ok for o in group),
               "bad": group[0].bad, "statuses": sorted({o.status for o in group if o.status is not None}),
               "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms)}
        if firsts:
            row["first_token_p50_ms"] = percentile(firsts, 50)
            row["first_token_p99_ms"] = percentile(firsts, 99)
        rows.append(row)
    good = [o for o in outcomes if not o.bad]
    bad = [o for o in outcomes if o.bad]
    return {
        "requests": len(outcomes), "errors": sum(not o.ok for o in outcomes),
        "good_requests": len(good), "good_errors": sum(not o.ok for o in good),
        "bad_requests": len(bad), "bad_answered_4xx": sum(o.ok for o in bad),
        "wall_s": wall_s, "throughput_rps": len(outcomes) / wall_s if wall_s > 0 else None,
        "p50_ms": percentile([1000 * o.seconds for o in outcomes], 50),
        "p99_ms": percentile([1000 * o.seconds for o in outcomes], 99),
        "endpoints": rows,
        "error_lines": [f"{o.endpoint}: {o.error}" for o in outcomes if not o.ok][:20],
    }


def run_load(base_url: str, *, requests: int, clients: int, seed: int = 0) -> dict:
    """The benchmark's core against a server already answering at ``base_url``: plan the
    requests, send them from ``clients`` clients, and summarize."""
    ctx = discover(base_url)
    planned = plan(ctx, requests, seed)
    outcomes, wall = send(base_url, planned, clients, ctx.max_running)
    result = summarize(outcomes, wall)
    result.update(clients=clients, seed=seed, mix=[name for name, *_ in MIX], bad_share=BAD_SHARE,
                  not_in_mix=uncovered(base_url), max_streams=ctx.max_running,
                  runs=sorted(name for names in ctx.runs.values() for name in names))
    return result


def make_runs(root: Path) -> Path:
    """Train the tiny runs of ``seqlab.explore.serve.TINY_RUNS`` (those of the tests) into
    ``root`` (a few seconds each), beside a small
    stand-in for the tour's report.html (``seqlab tour`` writes the real one), so that
    ``/api/runs/report`` serves a file as it does beside a tour."""
    import torch

    from seqlab.explore.serve import make_tiny_runs

    torch.set_num_threads(1)
    make_tiny_runs(root)
    (root / "report.html").write_text("<!doctype html><title>seqlab tour</title><h1>seqlab tour</h1>"
                                      "<p>A stand-in for the tour's report (bench_explore.py).</p>\n")
    return root


class Server:
    """``python -m seqlab explore RUNS_DIR --port P`` in a subprocess, as a user starts it."""

    def __init__(self, runs_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "seqlab", "explore", str(runs_dir), "--port", str(self.port)]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = START_TIMEOUT_S) -> float:
        """Seconds until the server answered GET /; an error with its output if it did not."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the explorer exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.base_url + "/", timeout=5).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the explorer did not answer within {timeout:.0f} s: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# the report


def _ms(v) -> str:
    return "" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def write(result: dict, out: Path, name: str = "explore_load") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    load = m["load_average_at_start"]
    lines = [
        "# `seqlab explore` under load",
        "",
        f"Command: `{result['command']}`  ",
        f"Server: `{result['server_command']}` (uvicorn, one process), answering {result['server_start_s']:.1f} s "
        f"after it was started, over the runs {', '.join(result['runs'])} ({result['runs_served']}).  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, Python {m['python']}; load average at the "
        f"start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min), at the end "
        f"{result['load_average_at_end'][0]:.2f}.",
        "",
    ]
    if max(load[0], result["load_average_at_end"][0]) > 0.5 * (m["cores"] or 1):
        lines += [f"Note: the load average was high (other work shared the machine's {m['cores']} cores while it "
                  "ran, the server and the clients included), so the latencies are those of a busy machine, "
                  "not an idle one.", ""]
    lines += [
        f"**{result['requests']} requests from {result['clients']} concurrent clients in {result['wall_s']:.1f} s: "
        f"{result['throughput_rps']:.1f} requests/s; {result['errors']} errors.** "
        f"Good requests: {result['good_requests']} ({result['good_errors']} errors); deliberately bad ones: "
        f"{result['bad_requests']}, of which {result['bad_answered_4xx']} got their expected 4xx with a one-line "
        f"error. All requests: p50 {_ms(result['p50_ms'])} ms, p99 {_ms(result['p99_ms'])} ms.",
        "",
        "| endpoint | requests | errors | status | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["endpoints"]:
        status = ", ".join(map(str, r["statuses"]))
        lines.append(f"| {r['endpoint']} | {r['requests']} | {r['errors']} | {status} | {_ms(r['p50_ms'])} | "
                     f"{_ms(r['p99_ms'])} | {_ms(r['max_ms'])} |")
    streams = [r for r in result["endpoints"] if "first_token_p50_ms" in r]
    for r in streams:
        lines += ["", f"{r['endpoint']}: to the first token p50 {_ms(r['first_token_p50_ms'])} ms, p99 "
                  f"{_ms(r['first_token_p99_ms'])} ms; to the end (the table) p50 {_ms(r['p50_ms'])} ms, p99 "
                  f"{_ms(r['p99_ms'])} ms, for 20 to 80 new tokens."]
    lines += [
        "",
        "Method: `benchmarks/bench_explore.py`'s docstring. Latency is from sending a request to reading its whole "
        "answer, measured by the client, queueing on the server included (the clients share one uvicorn process "
        "whose model endpoints run on a thread pool, and each loaded model serves one request at a time). "
        f"Requests follow a seeded plan (seed {result['seed']}): one of every endpoint of the mix, the rest drawn "
        f"by weight ({100 * result['bad_share']:.0f} % of the weight on deliberately bad requests). Streams: at "
        f"most {result['max_streams']} at once across the clients (the server's limit, which answers 429 beyond it).",
        "",
        "API routes of the server not in the mix: " + (", ".join(result["not_in_mix"]) or "none") + ".",
    ]
    if result["error_lines"]:
        lines += ["", "Errors (first 20):", ""] + [f"- {e}" for e in result["error_lines"]]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{name}.md", out / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=None, help=f"requests in all (default {FULL['requests']}; "
                    f"--quick {QUICK['requests']})")
    ap.add_argument("--clients", type=int, default=None, help=f"concurrent clients (default {FULL['clients']}; "
                    f"--quick {QUICK['clients']})")
    ap.add_argument("--quick", action="store_true", help="a smoke test: fewer requests and clients")
    ap.add_argument("--seed", type=int, default=0, help="seed of the request plan (default 0)")
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="serve this RUNS_DIR (it needs a gpt, bert, lstm, diffusion, vae and gan run) instead of "
                    "training tiny runs into a temporary folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for explore_load.{md,json} (default benchmarks/results; /tmp with --quick)")
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    requests = args.requests or size["requests"]
    clients = args.clients or size["clients"]
    if clients < 1:
        ap.error(f"--clients: expected at least 1, got {clients}")
    if requests < len(MIX):
        ap.error(f"--requests: expected at least {len(MIX)} (one per endpoint of the mix), got {requests}")
    out = args.out or (Path(tempfile.gettempdir()) / "seqlab_bench" if args.quick else RESULTS)
    machine = machine_with_load()
    command = " ".join(["python benchmarks/bench_explore.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="seqlab-explore-bench-") as tmp:
        if args.runs_dir is None:
            started = time.perf_counter()
            print(f"training {len(TINY_RUNS)} tiny runs ...", flush=True)
            runs_dir = make_runs(Path(tmp) / "runs")
            print(f"  {time.perf_counter() - started:.1f} s", flush=True)
        else:
            runs_dir = args.runs_dir
        server = Server(runs_dir)
        try:
            start_s = server.wait()
            print(f"server {server.base_url} answered after {start_s:.1f} s; sending {requests} requests from "
                  f"{clients} clients ...", flush=True)
            result = run_load(server.base_url, requests=requests, clients=clients, seed=args.seed)
        finally:
            server.stop()
    result.update(machine=machine, load_average_at_end=list(os.getloadavg()), command=command,
                  server_command="python -m seqlab explore RUNS_DIR --port P", server_start_s=start_s,
                  runs_served=(f"the runs of {args.runs_dir}" if args.runs_dir else
                               "tiny runs trained first, the sizes of tests/explore/conftest.py, beside a stand-in "
                               "report.html"))

    md, js = write(result, out)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
