"""Kill -9 at random moments: a training run (saving every step, keeping one checkpoint, so old
ones are pruned all the time) is killed again and again, also inside checkpoint writes, pointer
writes, renames and the deletion of old checkpoints (the child slows those down so that kills
land inside them). After every kill, each checkpoint the run directory lists must load (every
file matching its manifest), and the next invocation must resume from the newest one.
Slow: about two minutes (mostly the child's imports)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.rundir import CHECKPOINTS_DIR, list_checkpoints

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "win32" or not hasattr(signal, "SIGKILL"), reason="POSIX kill -9")]

KILLS = 36
TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

CHILD = r"""
import os, random, shutil, sys, time
seed, run, budget = int(sys.argv[1]), sys.argv[2], sys.argv[3]
slow_rng = random.Random(seed)  # its own generator: the run's random numbers are not touched

import seqlab
import seqlab.training.checkpoint as ck
import seqlab.training.io as io
import toy_family  # noqa: F401  (registers "toy-counter")
from seqlab import runs
from seqlab.training import loop
from seqlab.training.rundir import latest_checkpoint

runs.discover()  # the families' imports: before the parent starts its clock
real_step = loop._Run.train_step


def first_step(self):
    loop._Run.train_step = real_step
    print("training", flush=True)
    return real_step(self)


loop._Run.train_step = first_step


def slowed(f, seconds):
    def g(*a, **k):
        time.sleep(slow_rng.random() * seconds)
        out = f(*a, **k)
        time.sleep(slow_rng.random() * seconds)
        return out
    return g


ck.write_bytes_synced = slowed(ck.write_bytes_synced, 0.004)   # each file of a checkpoint
io.write_bytes_synced = slowed(io.write_bytes_synced, 0.004)   # pointers, run.json, metrics
os.rename = slowed(os.rename, 0.003)                           # publishing, hiding before deletion
os.replace = slowed(os.replace, 0.003)
os.unlink = slowed(os.unlink, 0.002)                           # shutil.rmtree, file by file
shutil.rmtree = slowed(shutil.rmtree, 0.004)

latest = latest_checkpoint(run)
print("resume " + latest.name if latest else "new", flush=True)
options = dict(max_steps=100000, save_every=1, keep_last=1, eval_every=7, eval_batches=1, log_every=3,
               batch_size=8, tensorboard=False)
if budget != "none":
    result = seqlab.resume(run, progress=False, max_seconds=float(budget))
    print("done %d" % result.steps, flush=True)
elif latest is None:
    seqlab.train("toy-counter", out=run, progress=False, preset="cpu-tiny", **options)
else:
    seqlab.resume(run, progress=False)
"""


def child(run: Path, seed: int, budget: str = "none") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(seed), str(run), budget], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))


def check_published(run: Path) -> int | None:
    """Load every checkpoint the run lists (each file against its manifest); the newest step."""
    found = list_checkpoints(run)
    for step, path in found:
        ckpt = load_checkpoint(path, family="toy-counter")
        assert ckpt.trainer_state["step"] == step, path
    return found[-1][0] if found else None


def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path):
    rng = random.Random(12)
    run = tmp_path / "run"
    newest = None
    seen_steps = []
    started = time.monotonic()
    for i in range(KILLS):
        p = child(run, seed=i)
        first = p.stdout.readline().strip()  # the imports are done; the run starts now
        expected = f"resume step-{newest:08d}" if newest is not None else "new"
        if first != expected:
            p.kill()
            _, err = p.communicate()
            pytest.fail(f"kill {i}: the child said {first!r}, expected {expected!r}\n{err}")
        if i % 4 == 0:  # early: in the set-up (cleaning up, loading the newest checkpoint) or the first saves
            time.sleep(rng.uniform(0.0, 0.6))
        else:  # after a varying amount of training
            assert p.stdout.readline().strip() == "training", i
            time.sleep(rng.uniform(0.0, 1.0))
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate()
        assert p.returncode == -signal.SIGKILL, f"kill {i}: the child ended by itself ({p.returncode})\n{err}"
        step = check_published(run)
        if newest is not None:
            assert step is not None and step >= newest, (i, newest, step)
        newest = step
        seen_steps.append(step)
        leftovers = sorted(q.name for q in (run / CHECKPOINTS_DIR).iterdir()) if (run / CHECKPOINTS_DIR).is_dir() \
            else []
        print(f"kill {i}: newest checkpoint {step}; checkpoints/ holds {leftovers}")
    assert newest is not None and newest > 20, seen_steps  # the run made progress across the kills

    # the last invocation is not killed: it cleans up, resumes from the newest checkpoint, goes on
    p = child(run, seed=KILLS, budget="0.5")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    lines = out.split("\n")
    assert lines[0] == f"resume step-{newest:08d}" and lines[1] == "training"
    assert int(lines[2].split()[1]) > newest
    names = sorted(q.name for q in (run / CHECKPOINTS_DIR).iterdir())
    assert not [n for n in names if n.startswith(".")], names  # nothing hidden is left
    check_published(run)
    print(f"{KILLS} kills in {time.monotonic() - started:.0f} s; steps {seen_steps}")
