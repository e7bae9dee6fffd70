"""What the torchrun tests share (tests/training/test_distributed*.py): ranks forked from the test
with the environment torchrun sets (gloo on the loopback address, float64, one thread each),
the one-process run they are compared with, and the comparison of two runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.training import loop
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import latest_checkpoint

VOLATILE = ("time", "tokens_per_s", "steps_per_s")  # the records' fields that depend on the clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fault(kind: str, at: int, who: int, rank: int) -> None:
    """Make rank ``who`` see a Ctrl-C ("ctrl-c") or crash ("crash") before step at + 1."""
    real = loop._Run.train_step

    def faulty(self):
        if self.step == at and rank == who:
            if kind == "ctrl-c":  # the first Ctrl-C, seen by this rank only
                self.guard.requested = True
            else:
                raise RuntimeError(f"rank {rank} crashed before step {at + 1}")
        return real(self)

    loop._Run.train_step = faulty


def _keep_weights(out: str, rank: int) -> None:
    """After the run, every rank writes the weights it holds to OUT/rank-R.pt (the tests compare
    them; only rank 0 writes the run directory's checkpoints)."""
    real = loop._Run.run

    def run_and_keep(self):
        result = real(self)
        torch.save({k: v.detach().clone() for k, v in self.model.state_dict().items()}, Path(out) / f"rank-{rank}.pt")
        return result

    loop._Run.run = run_and_keep


def _worker(rank: int, world: int, port: int, command: str, out: str, options: dict, errors, resume: bool,
            fault: str | None, keep_weights: bool) -> None:
    """One rank: the environment torchrun sets, float64, then seqlab.train (or resume)."""
    try:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port), SEQLAB_DIST_TIMEOUT="20")
        torch.set_num_threads(1)
        torch.set_default_dtype(torch.float64)
        if fault is not None:
            kind, at, who = fault.split(":")
            _fault(kind, int(at), int(who), rank)
        if keep_weights:
            _keep_weights(out, rank)
        if resume:
            seqlab.resume(out, progress=False)
        else:
            seqlab.train(command, out=out, progress=False, **options)
    except BaseException:
        errors.put((rank, traceback.format_exc()))
        raise SystemExit(1)
    errors.put((rank, None))


def run_ranks(world: int, command: str, out: Path, options: dict, *, resume: bool = False, fault: str | None = None,
              keep_weights: bool = False, timeout: float = 120) -> dict[int, str | None]:
    """Fork ``world`` ranks and wait for all; {rank: traceback or None}. ``fault`` "KIND:STEP:RANK"
    (KIND ctrl-c or crash); ``keep_weights``: each rank writes OUT/rank-R.pt at the end."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, command, str(out), options, errors, resume, fault,
                                               keep_weights))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not alive, f"ranks {alive} still running after {timeout} s"
    results = {}
    while len(results) < world and not errors.empty():
        rank, error = errors.get(timeout=5)
        results[rank] = error
    return results


def single(command: str, out: Path, options: dict, **kwargs):
    """One plain process (no torchrun environment), float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return seqlab.train(command, out=out, progress=False, **options, **kwargs)
    finally:
        torch.set_default_dtype(before)


def resume_in_one_process(out: Path):
    """``seqlab.resume`` in this process (no torchrun environment), float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return seqlab.resume(out, progress=False)
    finally:
        torch.set_default_dtype(before)


def stop_at(monkeypatch, step: int) -> None:
    """Every run started after this (the forked ranks included) stops after ``step`` steps, as a
    Ctrl-C would stop it; ``monkeypatch.undo()`` ends it."""
    real = loop._Run.train_step

    def interrupted(self):
        if self.step == step:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(loop._Run, "train_step", interrupted)


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path, *, steps: int | None = None, skip: tuple = (), tol: float = 1e-10,
                    float64: bool = False) -> None:
    """The same records (numbers to ``tol``, the records in ``skip``, (step, split) pairs, left
    out) and the same last checkpoint (after ``steps`` steps where given): weights, buffers and
    optimizer state to ``tol``; ``float64``: every floating weight is float64."""
    ra = [r for r in records(a) if (r["step"], r["split"]) not in skip]
    rb = [r for r in records(b) if (r["step"], r["split"]) not in skip]
    assert [(r["step"], r["split"], sorted(r)) for r in ra] == [(r["step"], r["split"], sorted(r)) for r in rb]
    for x, y in zip(ra, rb):
        for k, v in x.items():
            if isinstance(v, float):
                assert y[k] == pytest.approx(v, rel=tol, abs=tol), (x["step"], x["split"], k)
    ca, cb = load_checkpoint(latest_checkpoint(a)), load_checkpoint(latest_checkpoint(b))
    assert ca.step == cb.step
    if steps is not None:
        assert ca.step == steps
    assert sorted(ca.state_dict) == sorted(cb.state_dict)
    for name, t in ca.state_dict.items():
        if float64:
            assert t.dtype == torch.float64 or not t.is_floating_point(), name
        torch.testing.assert_close(cb.state_dict[name], t, rtol=tol, atol=tol, msg=name)
    assert (ca.optimizer_state is None) == (cb.optimizer_state is None)
    for pid, entry in (ca.optimizer_state or {"state": {}})["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(cb.optimizer_state["state"][pid][key], value, rtol=tol, atol=tol)


def assert_ranks_hold_the_same_weights(out: Path, world: int = 2) -> dict:
    """The weights every rank held at the end (``run_ranks(..., keep_weights=True)``) are equal bit
    for bit; returns rank 0's."""
    held = [torch.load(out / f"rank-{r}.pt", weights_only=True) for r in range(world)]
    for other in held[1:]:
        assert sorted(other) == sorted(held[0])
        for name, t in held[0].items():
            torch.testing.assert_close(other[name], t, rtol=0, atol=0, msg=name)  # bit for bit
    return held[0]
