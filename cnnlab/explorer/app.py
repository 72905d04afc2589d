"""The cnnlab explorer: a FastAPI app that opens trained runs in the browser.

Every view is computed by :mod:`cnnlab.inspect` (feature maps through ``capture``, Grad-CAM,
the summary table, the arithmetic); this module only moves numbers and PNGs over HTTP.

Safety: runs are looked up by name among the runs given at start-up (no paths from the
client), request bodies are capped in bytes (413 before they are parsed), uploads also in
pixels and must decode as images (no pickles, no other formats), and errors answer with a JSON
message, never a traceback. Nothing is fetched from other sites: ``/docs`` is a local page.

Threads: endpoints are plain ``def`` functions, so FastAPI runs the model work in its thread
pool, off the event loop. A lock per run keeps two requests from sharing a model's hooks (or
the summary's meta weights) at once, and every model call holds
:func:`cnnlab._tracing.model_call`, so no call runs while ``torch.fx`` traces a model
for the layer table (the trace swaps ``nn.Module.__call__`` for the whole process).
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import runs as run_files
from .._tracing import model_call
from ..errors import CnnlabError
from ..experiment import TrainedRun, load_run
from ..images import fit_to_input
from ..inspect import arithmetic as A
from ..inspect.summary import summary
from ..inspect.views import capture, grad_cam

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5 * 2**20  # 5 MiB
MAX_UPLOAD_PIXELS = 25_000_000  # width x height; larger files are decompression bombs here
# any request body: an upload plus its multipart framing, or the JSON pixels of a 3x512x512
# input (about 5 MB as text); larger bodies are refused before they are read to the end
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 2**20
MAX_MAPS_PER_LAYER = 16


@dataclass
class LoadedRun:
    name: str
    path: Path
    trained: TrainedRun
    lock: threading.Lock = field(default_factory=threading.Lock)  # the model's hooks, weights
    data_lock: threading.Lock = field(default_factory=threading.Lock)  # the test set, once
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request body larger than {MAX_BODY_BYTES // 2**20} MiB")


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
            detail = (_BodyTooLarge().detail if status == 413
                      else "the Content-Length header is not a number")  # fmt: skip
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
                    raise _BodyTooLarge()
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


def _unshowable(path: Path, error: CnnlabError) -> str:
    """Why the explorer cannot show the run at ``path`` (which ``load_run`` refused)."""
    try:
        state = run_files.load_checkpoint(path / run_files.CHECKPOINT, required=("kind",))
    except CnnlabError:
        return str(error)
    see = f"; `cnnlab graph show {path}` draws it" if state["kind"] == "nodes" else ""
    return f"a graph (GCN) run; the explorer shows image classifiers only{see}"


class Pixels(BaseModel):
    """An image as 0..255 values: ``H x W`` (gray) or ``C x H x W``."""

    pixels: list[Any] = Field(..., description="H x W or C x H x W numbers in 0..255")


class CamRequest(Pixels):
    class_index: int | None = Field(None, description="class to explain; default: predicted")
    layer: str | None = None


class KernelRequest(Pixels):
    layer: str
    channel: int = Field(..., ge=0)
    y: int = Field(..., ge=0)
    x: int = Field(..., ge=0)


def png(array: np.ndarray) -> str:
    """A ``H x W`` float map (scaled to its own range) or uint8 image -> PNG data URL."""
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / (high - low) * 255 if high > low else array * 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sprite(maps: np.ndarray) -> np.ndarray:
    """``K x H x W`` maps side by side in one uint8 strip ``H x K*W``, each scaled to its own
    range (one PNG per layer instead of one per map)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1) * 255, 0)
    return scaled.astype(np.uint8).transpose(1, 0, 2).reshape(maps.shape[1], -1)


def _colour(heat: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)


def create_app(run_dirs: list[Path], data_dir: str | None = None) -> FastAPI:
    """The app for these run folders, each opened now. Runs the explorer cannot show (graph
    runs, checkpoints that do not load) are left out, one line each in ``app.state.skipped``;
    a CnnlabError when none is left."""
    runs: dict[str, LoadedRun] = {}
    skipped: list[str] = []
    for path in map(Path, run_dirs):
        name = path.name
        if name in runs:
            raise CnnlabError(f"two runs are called {name!r}; serve them from different names")
        try:
            if not (path / run_files.CHECKPOINT).is_file():
                raise CnnlabError(f"not a finished run folder (no {run_files.CHECKPOINT})")
            trained = load_run(path)
        except CnnlabError as error:
            skipped.append(f"{name}: {_unshowable(path, error)}")
            continue
        runs[name] = LoadedRun(name, path, trained)
    if not runs:
        raise CnnlabError(
            f"none of the {len(skipped)} run(s) can be shown ({'; '.join(skipped)}); train an "
            "image classifier with `cnnlab train`"
        )
    app = FastAPI(
        title="cnnlab explorer", version="1", docs_url=None, redoc_url=None,
        description="See inside trained CNNs: predictions, feature maps, the arithmetic of one "
        "output pixel, Grad-CAM and the layer table.",
    )  # fmt: skip
    app.state.skipped = skipped
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(CnnlabError)
    def _cnnlab_error(request: Request, error: CnnlabError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # the location and message only: echoing the input back fails on NaN and leaks data
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in error.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    def _any_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, 500)

    def get(name: str) -> LoadedRun:
        run = runs.get(name)
        if run is None:
            raise HTTPException(404, f"no run named {name!r}; known: {', '.join(runs)}")
        return run

    def as_input(run: LoadedRun, pixels: list[Any]) -> torch.Tensor:
        trained = run.trained
        try:
            array = np.asarray(pixels, dtype=np.float64)
        except (ValueError, TypeError):
            raise HTTPException(422, "pixels must be a rectangular array of numbers") from None
        if array.ndim == 2:
            array = array[None]
        expected = (trained.in_channels, trained.input_size, trained.input_size)
        if array.shape != expected:
            raise HTTPException(
                422, f"pixels have shape {list(array.shape)}; this run expects "
                f"{list(expected)} (C x H x W, or H x W for gray)",
            )  # fmt: skip
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
            raise HTTPException(422, "pixel values must be numbers in 0..255")
        return torch.as_tensor(array.round().astype(np.uint8))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        """The API reference, rendered from /openapi.json by a local script (no CDN)."""
        return FileResponse(STATIC / "docs.html")

    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        """The runs this server shows."""
        out = []
        for name, run in runs.items():
            trained = run.trained
            out.append({
                "name": name, "model": trained.spec["name"], "dataset": trained.config.dataset,
                "classes": trained.classes, "in_channels": trained.in_channels,
                "input_size": trained.input_size, "epoch": trained.epoch,
            })  # fmt: skip
        return out

    @app.get("/api/runs/{name}/summary")
    def run_summary(name: str) -> dict[str, Any]:
        """The layer table: shapes, formula with numbers, parameters, multiply-adds, RF."""
        run = get(name)
        t = run.trained
        with run.lock:  # summary() traces under tracing(): never beside a model call
            report = summary(t.model, f"{t.in_channels}x{t.input_size}x{t.input_size}", name)
        return report.to_dict()

    @app.get("/api/runs/{name}/sample/{index}")
    def sample(name: str, index: int) -> dict[str, Any]:
        """Test-set image ``index`` with its true label."""
        run = get(name)
        with run.data_lock:
            if run.test_images is None:
                from ..experiment import load_data

                config = run.trained.config
                if data_dir:
                    config.data_dir = data_dir
                test = load_data(config)[1]
                run.test_images, run.test_labels = test.images, test.labels
        if not 0 <= index < len(run.test_images):
            raise HTTPException(404, f"test images are 0..{len(run.test_images) - 1}")
        image = run.test_images[index]
        label = int(run.test_labels[index])
        return {"pixels": image.tolist(), "label": label, "class": run.trained.classes[label]}

    @app.post("/api/runs/{name}/upload")
    def upload(name: str, file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        """Decode an uploaded PNG/JPEG into this run's input format (converted and resized
        with notes)."""
        run = get(name)
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
                    raise HTTPException(415, f"{image.format} images are not accepted")
                if image.size[0] * image.size[1] > MAX_UPLOAD_PIXELS:
                    raise HTTPException(413, f"image of {image.size[0]}x{image.size[1]} pixels "
                                             "is too large")  # fmt: skip
                image.load()
                array, notes = fit_to_input(image, run.trained.in_channels, run.trained.input_size)
        except HTTPException:
            raise
        except Image.DecompressionBombError:
            raise HTTPException(413, "the image has too many pixels (decompression bomb)") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise HTTPException(400, "the upload is not a readable PNG or JPEG image") from None
        return {"pixels": array.tolist(), "notes": notes}

    @app.post("/api/runs/{name}/analyze", response_model=None)
    def analyze(name: str, body: Pixels) -> JSONResponse:
        """Class probabilities and every layer's feature maps: the first 16 channels of each
        layer side by side in one PNG strip (``sprite``; map ``k`` is the ``k``-th
        ``W``-wide tile), each scaled to its own range."""
        run = get(name)
        image = as_input(run, body.pixels)
        t = run.trained
        with run.lock, model_call(), torch.no_grad(), capture(t.model) as record:
            logits = t.model(t.preprocess(image[None]))
        probs = torch.softmax(logits, 1)[0]
        layers = []
        for layer, out in record["outputs"].items():
            maps = out[0]
            if maps.ndim != 3:
                continue
            shown = maps[:MAX_MAPS_PER_LAYER]
            layers.append({
                "name": layer, "shape": list(maps.shape), "count": len(shown),
                "sprite": png(sprite(shown.numpy())),
                "min": float(maps.min()), "max": float(maps.max()),
            })  # fmt: skip
        ranked = [
            {"class": c, "index": i, "p": float(p)}
            for i, (c, p) in enumerate(zip(t.classes, probs))
        ]
        return {
            "probabilities": ranked,
            "predicted": int(probs.argmax()), "input": png(_display(image)), "layers": layers,
        }  # fmt: skip

    @app.post("/api/runs/{name}/cam")
    def cam(name: str, body: CamRequest) -> dict[str, Any]:
        """Grad-CAM for a class over the image (overlay and heat map as PNGs)."""
        run = get(name)
        image = as_input(run, body.pixels)
        t = run.trained
        if body.class_index is not None and not 0 <= body.class_index < len(t.classes):
            raise HTTPException(422, f"class_index must be in 0..{len(t.classes) - 1}")
        if body.layer is not None and body.layer not in dict(t.model.named_modules()):
            raise HTTPException(422, f"no layer named {body.layer!r}")
        with run.lock, model_call():
            result = grad_cam(t.model, t.preprocess(image[None])[0], body.class_index, body.layer)
        heat = result.heatmap.numpy()
        picture = _display(image).astype(np.float32)
        if picture.ndim == 2:
            picture = np.stack([picture] * 3, -1)
        overlay = (0.5 * picture + 0.5 * _colour(heat)).astype(np.uint8)
        return {
            "class_index": result.class_index, "class": t.classes[result.class_index],
            "probability": result.probability, "layer": result.layer,
            "overlay": png(overlay), "heatmap": png(_colour(heat)),
        }  # fmt: skip

    @app.post("/api/runs/{name}/kernel")
    def kernel(name: str, body: KernelRequest) -> dict[str, Any]:
        """One output pixel of a convolution computed in the open: the kernel, the input
        patch under it, their element-wise products and the sum (+ bias)."""
        run = get(name)
        image = as_input(run, body.pixels)
        t = run.trained
        module = dict(t.model.named_modules()).get(body.layer)
        if not isinstance(module, torch.nn.Conv2d) or module.groups != 1:
            convs = [n for n, m in t.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
            raise HTTPException(422, f"layer must be one of the convolutions: {', '.join(convs)}")
        inputs: dict[str, torch.Tensor] = {}

        def keep(mod, args):
            inputs["x"] = args[0].detach()

        with run.lock, model_call(), torch.no_grad():
            handle = module.register_forward_pre_hook(keep)
            try:
                with capture(t.model, [body.layer]) as record:
                    t.model(t.preprocess(image[None]))
            finally:
                handle.remove()
        out = record["outputs"][body.layer][0]
        c_out, height, width = out.shape
        if body.channel >= c_out or body.y >= height or body.x >= width:
            raise HTTPException(422, f"channel, y, x must be below {c_out}, {height}, {width}")
        x = inputs["x"][0]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (module.kernel_size, module.stride,
                                                  module.padding, module.dilation)  # fmt: skip
        padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
        top, left = body.y * sh, body.x * sw
        patch = padded[:, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw]
        weights = module.weight[body.channel].detach()
        products = patch * weights
        bias = float(module.bias[body.channel].detach()) if module.bias is not None else 0.0
        total = float(products.sum()) + bias
        return {
            "layer": body.layer, "channel": body.channel, "y": body.y, "x": body.x,
            "kernel": weights.tolist(), "patch": patch.tolist(), "products": products.tolist(),
            "bias": bias, "sum": total, "output": float(out[body.channel, body.y, body.x]),
            "window": {"top": top - ph, "left": left - pw, "height": kh, "width": kw},
            "formula": f"sum of {products.numel()} products + bias {bias:.4f} = {total:.4f}",
        }  # fmt: skip

    @app.get("/api/arithmetic")
    def arithmetic(
        n: int = 28, kernel: int = 5, stride: int = 1, padding: int = 0, dilation: int = 1,
        in_channels: int = 1, out_channels: int = 1,
    ) -> dict[str, Any]:  # fmt: skip
        """Output size of a 2-D convolution with the formula filled in (or what is wrong and
        how to fix it), its parameters and multiply-adds."""
        for label, value, low, high in (("n", n, 1, 4096), ("kernel", kernel, 1, 512),
                                        ("stride", stride, 1, 512), ("padding", padding, 0, 512),
                                        ("dilation", dilation, 1, 64),
                                        ("in_channels", in_channels, 1, 4096),
                                        ("out_channels", out_channels, 1, 4096)):  # fmt: skip
            if not low <= value <= high:
                raise HTTPException(422, f"{label}={value}: expected {low}..{high}")
        axis = A.axis_size(n, kernel, stride, (padding, padding), dilation)
        problem = A.axis_problem(axis, "output size")
        out = axis.out if axis.fits else 0
        params = kernel * kernel * in_channels * out_channels + out_channels
        macs = out * out * out_channels * kernel * kernel * in_channels
        return {
            "out": out, "formula": axis.formula(), "valid": problem is None, "problem": problem,
            "extent": axis.extent, "padded": axis.padded, "params": params,
            "params_formula": f"{kernel}*{kernel}*{in_channels}*{out_channels} + {out_channels}"
            f" = {params:,}",
            "macs": macs, "macs_formula": f"{out}x{out}x{out_channels} outputs x "
            f"{kernel}*{kernel}*{in_channels} = {macs:,}",
        }  # fmt: skip

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _display(image: torch.Tensor) -> np.ndarray:
    """uint8 ``C x H x W`` -> ``H x W`` or ``H x W x 3`` for a PNG."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
