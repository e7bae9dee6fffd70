"""The load benchmark's core (benchmarks/bench_explore.py) in its quick setting, against the
live server over the tiny runs of conftest.py: no errors, every endpoint of the mix requested,
the deliberately bad requests answered with their 4xx; and its verdicts can say no."""

from __future__ import annotations

import importlib.util
import random
import sys
import threading
from pathlib import Path

import httpx
import pytest

from seqlab.explore.serve import free_port

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_explore.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_explore", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_load_has_no_errors_and_covers_every_endpoint(bench, live_server):
    result = bench.run_load(live_server, **bench.QUICK, seed=0)
    assert result["requests"] == bench.QUICK["requests"]
    assert result["errors"] == 0, result["error_lines"]
    rows = {r["endpoint"]: r for r in result["endpoints"]}
    assert set(rows) == {name for name, *_ in bench.MIX}
    assert sum(r["requests"] for r in rows.values()) == result["requests"]
    # every API route the server has is in the mix
    assert result["not_in_mix"] == []
    # the deliberately bad requests: each got the 4xx its row expects (and nothing else)
    ctx = bench.discover(live_server)
    bad = {name: maker for name, _, maker, is_bad in bench.MIX if is_bad}
    assert bad and result["bad_requests"] == result["bad_answered_4xx"] >= len(bad)
    for name, maker in bad.items():
        expected = maker(random.Random(0), ctx).expect
        assert 400 <= expected < 500 and rows[name]["bad"] and rows[name]["statuses"] == [expected], name
    for name, row in rows.items():
        if name not in bad and name != "GET /api/runs/report":  # no tour report in this RUNS_DIR: 404
            assert all(200 <= s < 300 for s in row["statuses"]), (name, row["statuses"])
    stream = rows["GET /api/sampling/stream"]
    assert 0 < stream["first_token_p50_ms"] <= stream["p50_ms"]


def test_the_plan_is_seeded_and_holds_every_row(bench, live_server):
    ctx = bench.discover(live_server)
    one, two = bench.plan(ctx, 80, seed=3), bench.plan(ctx, 80, seed=3)
    assert [(r.url, r.params, r.body) for r in one] == [(r.url, r.params, r.body) for r in two]
    assert {r.endpoint for r in one} == {name for name, *_ in bench.MIX}
    assert [(r.url, r.params) for r in bench.plan(ctx, 80, seed=4)] != [(r.url, r.params) for r in one]
    with pytest.raises(ValueError, match="at least"):
        bench.plan(ctx, len(bench.MIX) - 1)


def test_wrong_answers_count_as_errors(bench, live_server):
    """A good request answered 4xx, a bad one answered 2xx or with another 4xx, a refused
    connection: each is an error."""
    sem = threading.Semaphore(1)
    Req = bench.Req
    with httpx.Client(base_url=live_server, timeout=30) as c:
        assert bench.one_request(c, Req("e", "GET", "/api/unfold", {"T": 5}), sem).ok
        assert bench.one_request(c, Req("e", "GET", "/api/unfold", {"T": 21}, expect=422), sem).ok
        out = bench.one_request(c, Req("e", "GET", "/api/unfold", {"T": 21}), sem)
        assert not out.ok and out.status == 422 and "422" in out.error
        out = bench.one_request(c, Req("e", "GET", "/api/unfold", {"T": 5}, expect=422), sem)
        assert not out.ok and out.bad and "expected 422, got 200" in out.error
        assert not bench.one_request(c, Req("e", "GET", "/api/unfold", {"T": 21}, expect=400), sem).ok
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5) as c:
        out = bench.one_request(c, Req("e", "GET", "/"), sem)
        assert not out.ok and out.status is None and "ConnectError" in out.error
