"""The explorer's FastAPI application: ``create_app(runs_dir)``.

Routes:

- ``/``: the index of the widgets; ``/w/{widget}``: a widget's page (a shell that imports
  ``static/{widget}.js``; the query string, ``?run=gpt`` for example, reaches the module);
- ``/static/...``: the plain JavaScript modules and the style sheet, from the package;
- ``/api/equation.svg?tex=...``: an equation typeset by matplotlib's mathtext
  (``seqlab.viz.equations``), so pages show the lecture's notation without a TeX engine;
- ``/api/{widget}/...``: each widget's JSON endpoints (its module's ``router``).

Errors are JSON ``{"error": "one line"}`` with a 4xx status: FastAPI's own validation errors
(422), a ``BadRequest`` from the endpoints, and any ``ValueError`` that seqlab's API raises for
bad input (400: they are the one-line messages of ``seqlab.validation.fail``).
"""

from __future__ import annotations

import html
import importlib
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqlab.explore.common import BadRequest, ModelCache
from seqlab.validation import fail

STATIC = Path(__file__).parent / "static"
# (module, title, one line): the widgets in the order the index lists them
WIDGETS = (
    ("unfold", "Unfold", "Unroll an RNN over T steps and see which weight copies dC/dw uses."),
    ("gradflow", "Gradient flow", "||dC/da_t|| over t for a weight scale and a cell, with clipping on or off."),
    ("attention", "Attention", "Every layer's and head's attention of a GPT or BERT run, and the next token."),
    ("sampling", "Sampling", "Stream tokens from a language-model run with temperature, top-k and top-p."),
    ("hopfield", "Hopfield", "Asynchronous recall one update at a time, with the energy falling."),
    ("generative", "Generative models", "A diffusion trajectory, a VAE's latent map, a GAN's samples."),
    ("runs", "Runs", "The run directories with their training curves and configuration."),
)
MAX_TEX = 400


def _one_line_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
        got = err.get("input")
        got = "" if got is None or isinstance(got, dict) else f", got {str(got)[:60]!r}"
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request"


def _page(title: str, body: str) -> str:
    nav = " ".join(f'<a href="/w/{name}">{html.escape(t)}</a>' for name, t, _ in WIDGETS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · seqlab explore</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/style.css"></head>
<body><nav><a href="/" class="home">seqlab explore</a> {nav}</nav>
{body}
</body></html>
"""


def create_app(runs_dir: str | Path = "runs") -> FastAPI:
    """The explorer over the run directories below ``runs_dir`` (which must exist)."""
    root = Path(runs_dir)
    if not root.is_dir():
        fail("RUNS_DIR", "an existing folder of run directories", f"{str(runs_dir)!r} (no such folder)")
    app = FastAPI(title="seqlab explore", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.runs_dir = root.resolve()
    app.state.models = ModelCache()
    from seqlab.explore.sampling import Generations

    app.state.sampling = Generations()  # the running and last finished text generations

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": _one_line_validation(exc)}, status_code=422)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError):
        return JSONResponse({"error": str(exc).splitlines()[0] if str(exc) else "bad request"}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        items = "\n".join(f'<li><a href="/w/{name}">{html.escape(t)}</a>: {html.escape(line)}</li>'
                          for name, t, line in WIDGETS)
        return _page("Widgets", f"<main><h1>seqlab explore</h1><p>The lecture's interactive questions, "
                     f"answered by seqlab's own models. Runs are read from <code>"
                     f"{html.escape(str(app.state.runs_dir))}</code>.</p><ul>{items}</ul></main>")

    names = {name: title for name, title, _ in WIDGETS}

    @app.get("/w/{widget}", response_class=HTMLResponse)
    def widget_page(widget: str) -> str:
        if widget not in names:
            raise BadRequest(f"widget: expected one of {', '.join(names)}, got {widget[:40]!r}", 404)
        body = (f'<main><h1>{html.escape(names[widget])}</h1><div id="widget"></div></main>\n'
                f'<script type="module">import {{ mount }} from "/static/{widget}.js";\n'
                f'mount(document.getElementById("widget"), new URLSearchParams(location.search));</script>')
        return _page(names[widget], body)

    @app.get("/api/equation.svg")
    def equation(tex: str = Query(..., min_length=1, max_length=MAX_TEX)) -> Response:
        from seqlab.viz.equations import equation_svg

        return Response(equation_svg(tex), media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=3600"})

    for name, _, _ in WIDGETS:
        module = importlib.import_module(f"seqlab.explore.{name}")
        app.include_router(module.router, prefix=f"/api/{name}")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
