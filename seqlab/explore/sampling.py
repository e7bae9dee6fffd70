r"""The sampling widget's endpoints: text from a language-model run, streamed as it is generated.

Lecture, "Large Language Models": a language model gives the logits z of the next token; it
is drawn from p_i = exp(z_i / tau) / sum_j exp(z_j / tau), restricted to the top-k tokens
and then to the top-p nucleus, and fed back in. The text comes from the run's family's own
sampler (``family.sample``, what ``seqlab sample RUN`` and ``seqlab.sample(RUN, ...)`` run),
so one seed and one set of options give the same text here as on the command line.

- ``GET /api/sampling/runs``: the runs below RUNS_DIR whose family samples text (GPT, the
  character RNN/LSTM/GRU, fine-tuned GPTs, RLHF policies ...).
- ``GET /api/sampling/stream?run=&prompt=&length=&temperature=&top_k=&top_p=&seed=``:
  newline-delimited JSON, one object a line: ``{"type": "start", ...}``, then
  ``{"type": "text", "text": piece}`` as the tokens come, then ``{"type": "end", "text":
  the whole generated text, "sample": prompt + text, ...}`` (or ``{"type": "error"}``).
- ``GET /api/sampling/info?run=``: the run's family, vocabulary size and default prompt.
- ``GET /api/sampling/status``: how many generations are running, and the last finished.

The generation runs in a worker thread (the event loop only relays its pieces); between two
pieces the stream checks ``request.is_disconnected()``. A client that goes away (a Stop
button aborting its fetch, a closed tab) cancels the generation: the worker stops at its
next token. At most ``MAX_RUNNING`` generations run at once (429 beyond).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from seqlab.explore.common import BadRequest, family_of, models, run_path, runs_of

router = APIRouter()

MAX_LENGTH = 1000  # new tokens at most
MAX_PROMPT = 500  # characters of prompt at most
MAX_RUNNING = 4  # generations at once
MAX_SEED = 2**31 - 1
MAX_TEMPERATURE = 5.0
KEEP_FINISHED = 20  # finished generations remembered by /status


class _Cancelled(Exception):
    """Raised in the worker thread at the next token once the client has gone."""


class Generations:
    """The generations of one app: how many run now, and the last finished (for /status)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.finished: deque[dict] = deque(maxlen=KEEP_FINISHED)
        self.ids = itertools.count(1)


def generations(request: Request) -> Generations:
    return request.app.state.sampling  # made by create_app


def text_families() -> list[str]:
    """Families whose sampler makes text (their sample options are a ``SampleOptions``)."""
    from seqlab import runs
    from seqlab.llm.sampling import SampleOptions

    return [name for name in runs.families_with("sample")
            if issubclass(runs.get_family(name).sample_class, SampleOptions)]


@router.get("/runs")
def list_runs(request: Request) -> dict:
    """The runs below RUNS_DIR whose family samples text."""
    wanted = text_families()
    out = [{"name": name, "family": meta["family"]} for _, name, meta in runs_of(request, wanted)]
    return {"runs": out, "families": sorted(wanted), "max_length": MAX_LENGTH, "max_prompt": MAX_PROMPT}


@router.get("/info")
async def info(request: Request, run: str = Query(..., max_length=200)) -> dict:
    """What the controls need of a run: its family, vocabulary size V (top-k's range) and the
    prompt ``seqlab sample`` starts from when none is given."""
    from seqlab.llm.sampling import default_prompt

    path = run_path(request, run)
    family_name = _text_family(request, path, run)
    model, record, _ = await run_in_threadpool(models(request).get, path)
    tok = record.tokenizer
    return {"run": run, "family": family_name, "vocab_size": tok.vocab_size, "default_prompt": default_prompt(tok),
            "max_length": MAX_LENGTH, "max_prompt": MAX_PROMPT, "max_temperature": MAX_TEMPERATURE}


def _text_family(request: Request, path, run: str) -> str:
    """The family of the run at ``path``; a 400 unless it samples text."""
    family_name = family_of(request, path)
    wanted = text_families()
    if family_name not in wanted:
        raise BadRequest(f"run: expected a run of a family that samples text ({', '.join(wanted)}), "
                         f"got {run!r}, a {family_name!r} run")
    return family_name


@router.get("/status")
def status(request: Request) -> dict:
    """The number of generations running now, and the last finished ones (newest last)."""
    g = generations(request)
    with g.lock:
        return {"running": g.running, "finished": list(g.finished)}


def _prepare(request: Request, path, family_name: str, options: dict):
    """Load the run, check the options against it (prompt characters, top-k against V) and
    make the family's sample options; (model, record, lock, family, sample options, V)."""
    from seqlab import runs

    model, record, lock = models(request).get(path)
    family = runs.get_family(family_name)
    tok = record.tokenizer
    V = tok.vocab_size
    if options["top_k"] is not None and options["top_k"] > V:
        raise BadRequest(f"top_k: expected 1 to {V} (the run's vocabulary), got {options['top_k']}")
    tok.encode(options["prompt"], name="prompt")  # characters outside the vocabulary: a 400 now
    sample_options = runs.make_options(family.sample_class, options, f"{family_name} sample")
    return model, record, lock, family, sample_options, V


@router.get("/stream")
async def stream(request: Request, run: str = Query(..., max_length=200),
                 prompt: str = Query(..., min_length=1, max_length=MAX_PROMPT),
                 length: int = Query(200, ge=1, le=MAX_LENGTH),
                 temperature: float = Query(0.8, ge=0.0, le=MAX_TEMPERATURE),
                 top_k: int | None = Query(None, ge=1, le=100_000),
                 top_p: float | None = Query(None, gt=0.0, le=1.0),
                 seed: int = Query(0, ge=0, le=MAX_SEED)) -> StreamingResponse:
    """The text sampled from ``run`` after ``prompt``, streamed as newline-delimited JSON."""
    path = run_path(request, run)
    family_name = _text_family(request, path, run)
    options = dict(prompt=prompt, length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    model, record, lock, family, sample_options, V = await run_in_threadpool(
        _prepare, request, path, family_name, options)
    g = generations(request)
    with g.lock:
        if g.running >= MAX_RUNNING:
            raise BadRequest(f"sampling: expected at most {MAX_RUNNING} generations at once, got another "
                             "(wait for one to finish, or stop it)", 429)
        ident = next(g.ids)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()
    info = {"id": ident, "run": run, "requested": length, "characters": 0, "pieces": 0, "cancelled": False}

    def on_text(piece: str) -> None:
        if cancel.is_set():
            raise _Cancelled
        info["pieces"] += 1
        info["characters"] += len(piece)
        loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))

    def work() -> None:
        """The worker thread: the family's sampler, its pieces sent to the queue."""
        started = time.perf_counter()
        try:
            with lock:
                if cancel.is_set():
                    raise _Cancelled
                text = family.sample(model, record, sample_options, on_text=on_text)
            item = ("end", text)
        except _Cancelled:
            info["cancelled"] = True
            item = ("cancelled", None)
        except ValueError as e:
            item = ("error", str(e).splitlines()[0] if str(e) else "bad request")
        except Exception as e:  # a bug: one line to the client, never a traceback
            item = ("error", f"sampling failed: {type(e).__name__}: {str(e)[:200]}")
        finally:
            info["seconds"] = round(time.perf_counter() - started, 4)
            with g.lock:
                g.running -= 1
                g.finished.append(dict(info))
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop has closed (server shutting down)
            pass

    def line(obj: dict) -> bytes:
        return (json.dumps(obj) + "\n").encode()

    async def body():
        with g.lock:
            g.running += 1  # counted from here; the worker's last act is to count itself out
        threading.Thread(target=work, name=f"seqlab-sample-{ident}", daemon=True).start()
        try:
            yield line({"type": "start", "id": ident, "run": run, "family": family_name, "prompt": prompt,
                        "length": length, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                        "seed": seed, "vocab_size": V})
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield line({"type": "text", "text": value})
                    if await request.is_disconnected():
                        return
                elif kind == "end":
                    yield line({"type": "end", "text": value, "sample": family.format_sample(value, sample_options),
                                "characters": info["characters"], "seconds": info.get("seconds")})
                    return
                elif kind == "error":
                    yield line({"type": "error", "error": value})
                    return
                else:
                    return
        finally:
            cancel.set()  # the client went away, or the stream ended: the worker stops at its next token

    # Connection: close: a browser that aborts the fetch closes the socket at once (it would
    # otherwise read the rest of the body, to keep the connection for the next request)
    return StreamingResponse(body(), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                      "Connection": "close"})
