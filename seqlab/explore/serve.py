"""Serving the explorer from Python: on a free local port in a thread (``serving``), and the
tiny runs it is tested and measured on (``make_tiny_runs``).

    with serving(create_app("tour/runs")) as url:     # http://127.0.0.1:PORT
        ...                                           # a browser, httpx, a benchmark's clients

``seqlab explore`` itself runs uvicorn in the foreground (``seqlab.cli.explore``); this is for
the tests, the load benchmark and the screenshot script, which drive a server they started.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

# tiny runs of every family the widgets show (a few seconds to train in all): name -> (command,
# options). The tests' fixture and the load benchmark serve these.
TEXT = dict(preset="cpu-tiny", block_size=16, batch_size=4, warmup_steps=2, max_steps=4, eval_every=4,
            log_every=2, eval_batches=1, device="cpu")
IMAGES = dict(preset="cpu-tiny", batch_size=8, warmup_steps=2, max_steps=4, eval_every=4, log_every=2,
              eval_batches=1, device="cpu")
TINY_RUNS = {
    "gpt": ("gpt", TEXT),
    "bert": ("bert", TEXT),
    "lstm": ("lstm", TEXT),
    "diffusion": ("diffusion", dict(IMAGES, timesteps=20)),
    "vae": ("vae", IMAGES),
    "gan": ("gan", IMAGES),
}


def make_tiny_runs(root: Path) -> Path:
    """Train the runs of ``TINY_RUNS`` into ``root/NAME``; returns ``root``."""
    import seqlab

    for name, (command, options) in TINY_RUNS.items():
        seqlab.train(command, out=Path(root) / name, progress=False, **options)
    return Path(root)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the system's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, *, host: str = "127.0.0.1", port: int | None = None, start_timeout: float = 30.0) -> Iterator[str]:
    """``app`` served by uvicorn in a daemon thread while the block runs; yields its base URL.
    A server that has not started within ``start_timeout`` seconds is a RuntimeError."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port or free_port(host), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the explorer's server did not start within {start_timeout:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
