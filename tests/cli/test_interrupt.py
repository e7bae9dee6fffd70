"""Ctrl-C, as a user presses it: ``python -m seqlab ...`` in a child process, sent SIGINT.

Whenever it comes (while PyTorch is being imported, while text is being sampled), and
whether it comes once or twice in a row, the command ends with exit status 130 and the one
line ``seqlab: interrupted``, never a traceback; text already printed stays. A training run
still saves a checkpoint on the first Ctrl-C (``seqlab.training.loop``'s guard).

The moments are found, not guessed: PyTorch's import is under way once its library shows in
``/proc/PID/maps`` (Linux), and sampling once the first text has arrived on stdout.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqlab.cli import main

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs POSIX signals and /proc (Linux)")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    for family in ("lstm", "gpt"):
        assert main(["train", family, "--preset", "cpu-tiny", "--max-steps", "2", "--eval-every", "2",
                     "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(folder / family)]) == 0
    return folder


def _start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "seqlab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env=env)


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _loading_torch(p: subprocess.Popen) -> bool:
    assert p.poll() is None, "the command ended before PyTorch was loaded"
    try:
        return "libtorch" in Path(f"/proc/{p.pid}/maps").read_text()
    except OSError:
        return False


def _read_some(p: subprocess.Popen, n: int, timeout: float = 60.0) -> bytes:
    """At least ``n`` bytes of the child's stdout, as they arrive."""
    got = b""
    end = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < end, f"no output after {timeout} s (got {got!r})"
        ready, _, _ = select.select([p.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, f"stdout closed early (rc {p.wait()}, stderr {p.stderr.read()!r})"
            got += chunk
    return got


def _finish(p: subprocess.Popen, before: bytes = b"") -> tuple[int, str, str]:
    out, err = p.communicate(timeout=60)
    return p.returncode, (before + out).decode(), err.decode()


def test_ctrl_c_twice_while_pytorch_is_imported(runs):
    p = _start("sample", str(runs / "lstm"), "--length", "100000")
    _wait_for(lambda: _loading_torch(p), "PyTorch's import")
    for _ in range(2):
        p.send_signal(signal.SIGINT)
        time.sleep(0.01)
    code, out, err = _finish(p)
    assert (code, err) == (130, "seqlab: interrupted\n") and out == ""


@pytest.mark.parametrize("run, presses", [("lstm", 1), ("gpt", 2)])
def test_ctrl_c_while_sampling_keeps_the_text_printed_so_far(runs, run, presses):
    p = _start("sample", str(runs / run), "--length", "100000", "--prompt", "def ")
    first = _read_some(p, 20)  # streamed: text arrives long before 100000 tokens are done
    assert first.startswith(b"def ")
    for _ in range(presses):
        p.send_signal(signal.SIGINT)
        time.sleep(0.01)
    code, out, err = _finish(p, first)
    assert (code, err) == (130, "seqlab: interrupted\n")
    assert out.endswith("\n")  # the line is ended; the text printed stays (stdout is only ever appended to)
    assert len(out) < 100000  # it did stop


def test_ctrl_c_during_training_still_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    p = _start("train", "lstm", "--preset", "cpu-tiny", "--max-steps", "100000", "--eval-every", "100000",
               "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(out))
    _wait_for(lambda: (out / "metrics.jsonl").exists() or p.poll() is not None, "the run to start")
    time.sleep(0.5)  # some steps
    p.send_signal(signal.SIGINT)
    code, printed, err = _finish(p)
    assert code == 130 and "Traceback" not in err, err
    assert "interrupted at step" in printed and f"seqlab train --resume {out}" in printed
    assert list((out / "checkpoints").glob("step-*"))
