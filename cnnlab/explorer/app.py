"""The cnnlab explorer: a FastAPI app that opens trained runs in the browser.

Every view is computed by :mod:`cnnlab.inspect` (feature maps through ``capture``, Grad-CAM,
the summary table, the arithmetic); the explorer only moves numbers and PNGs over HTTP. This
module assembles the app: the body-size middleware, the error answers, the page, its ``/docs``
and static files, and the API of :mod:`.routes` over the runs of :mod:`.service`.

Safety: runs are looked up by name among the runs given at start-up (no paths from the
client), request bodies are capped in bytes (413 before they are parsed), uploads also in
pixels and must decode as images (no pickles, no other formats), and errors answer with a JSON
message, never a traceback. Nothing is fetched from other sites: ``/docs`` is a local page.

Threads: see :mod:`.routes` (handlers run in FastAPI's thread pool) and :mod:`.service` (a lock
per run; every model call under :func:`cnnlab._tracing.model_call`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CnnlabError
from .problems import Refusal, echo, http_error_sentence, shorten_echoes, validation_sentence
from .routes import router
from .service import Explorer
from .uploads import MAX_UPLOAD_BYTES, body_too_large, upload_too_large

STATIC = Path(__file__).parent / "static"
# any request body: an upload plus its multipart framing, or the JSON pixels of a 3x512x512
# input (about 5 MB as text); larger bodies are refused before they are read to the end
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 2**20


class _BodyTooLarge(HTTPException):
    def __init__(self, path: str = "", limit: int = MAX_BODY_BYTES) -> None:
        # an upload is told the upload's own limit, the one its endpoint checks
        is_upload = path.endswith("/upload")
        super().__init__(413, upload_too_large() if is_upload else body_too_large(limit))


class BodyLimit:
    """ASGI middleware: a request whose body is (declared or turns out) larger than
    ``max_bytes`` is answered 413 with a JSON message; nothing past the limit is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            status = 413 if declared.isdigit() else 400
            detail = (
                _BodyTooLarge(scope["path"], self.max_bytes).detail
                if status == 413
                else f"the Content-Length header {echo(declared.decode('latin-1'))} is not a "
                "number: expected the body's size in bytes; send a valid Content-Length"
            )
            await JSONResponse({"detail": detail}, status)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:  # a body streamed without (or beyond) its length
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(scope["path"], self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _BodyTooLarge as error:  # raised where no handler turned it into a response
            if started:
                raise
            await JSONResponse({"detail": error.detail}, 413)(scope, receive, send)


def _answer_errors(app: FastAPI) -> None:
    """Every error as a JSON ``detail``: refusals with their status, cnnlab's errors 400,
    invalid requests 422 (without echoing the input), anything else 500 (no traceback). A
    user's value repeated in a message is cut to a short prefix (:func:`.shorten_echoes`)."""

    @app.exception_handler(Refusal)
    def _refused(request: Request, error: Refusal) -> JSONResponse:
        return JSONResponse({"detail": shorten_echoes(error.detail)}, status_code=error.status)

    @app.exception_handler(CnnlabError)
    def _cnnlab_error(request: Request, error: CnnlabError) -> JSONResponse:
        return JSONResponse({"detail": shorten_echoes(str(error))}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # one sentence; only short scalars are echoed (a NaN or a whole image never is)
        detail = shorten_echoes(validation_sentence(error.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = http_error_sentence(
            error.status_code,
            error.detail,
            request.method,
            request.url.path,
            request.headers.get("content-type", ""),
        )
        return JSONResponse(
            {"detail": shorten_echoes(detail)}, error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    def _any_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, 500)


def create_app(
    sources: list[Path | str], data_dir: str | None = None, seed: int = 0, weights: bool = False
) -> FastAPI:
    """The app for these run folders (``Path``) and model sources (a ``str`` naming a
    registered model, ``torchvision:NAME`` or ``module:callable``; untrained models drawn
    with ``seed``, torchvision's ImageNet weights from the cache with ``weights``), each opened
    now. Runs the explorer cannot show (graph runs, checkpoints that do not load) are left
    out, one line each in ``app.state.skipped``; a CnnlabError when none is left."""
    explorer = Explorer.open(sources, data_dir, seed, weights)
    app = FastAPI(
        title="cnnlab explorer",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="See inside trained CNNs: predictions, feature maps, the arithmetic of one "
        "output pixel, Grad-CAM and the layer table.",
    )
    app.state.explorer = explorer
    app.state.skipped = explorer.skipped
    app.state.notes = [
        f"{name}: {note}" for name, run in explorer.runs.items() for note in run.source.notes or []
    ]
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    _answer_errors(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        """The API reference, rendered from /openapi.json by a local script (no CDN)."""
        return FileResponse(STATIC / "docs.html")

    @app.get("/favicon.ico", include_in_schema=False)
    @app.get("/favicon.svg", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
