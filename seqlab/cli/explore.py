"""``seqlab explore``: the lecture's interactive widgets as a local web app (``seqlab.explore``)."""

from __future__ import annotations

import argparse
import errno
import socket

VERB = "explore"


def _check_port(host: str, port: int) -> None:
    from seqlab.validation import fail

    if not 0 < port < 65536:
        fail("--port", "a port number from 1 to 65535", str(port))
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        fail("--host", "an address or host name of this machine", repr(host))
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fail("--port", "a free port", f"{port}, which another program is using on {host}")
            fail("--host", "an address this machine can listen on", f"{host}:{port} ({e.strerror})")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from seqlab.explore.app import create_app

    app = create_app(args.runs_dir)
    _check_port(args.host, args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"seqlab explore: http://{shown}:{args.port}/  (runs from {app.state.runs_dir}; Ctrl-C stops it)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(
        "explore",
        help="the lecture's interactive widgets as a local web app",
        description="Start a local web app with the lecture's interactive widgets (unfolding an RNN, "
        "gradient flow, attention, sampling, Hopfield recall, generative models, runs), backed by "
        "seqlab's own models and the runs under RUNS_DIR. It listens on localhost unless --host "
        "says otherwise.",
    )
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                   help="folder of run directories to show (default: runs)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.set_defaults(handler=run)
