"""The explorer's JSON API: one small handler per endpoint over :class:`.service.Explorer`.

Handlers are plain ``def`` functions, so FastAPI runs the model work in its thread pool, off
the event loop. Their names and docstrings are the operation ids and descriptions of
``/openapi.json`` (which ``/docs`` renders).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..inspect.backprop_walk import ACTIVATIONS, COSTS, POOLS
from .backprop import MAX_LR, OUTPUTS, SEED_LIMIT, SIZES, example_walk, one_sgd_step
from .playground import OutOfBounds, conv_arithmetic, presets
from .problems import Refusal
from .service import DEFAULT_CHANNELS, MAX_CHANNELS, Explorer
from .uploads import FITS, MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, formats, mib

router = APIRouter()


def explorer(request: Request) -> Explorer:
    """The service of the app serving this request (set by :func:`.app.create_app`)."""
    return request.app.state.explorer


class Pixels(BaseModel):
    """An image as 0..255 values: ``H x W`` (gray) or ``C x H x W``."""

    pixels: list[Any] = Field(..., description="H x W or C x H x W numbers in 0..255")


class AnalyzeRequest(Pixels):
    channels: int = Field(
        DEFAULT_CHANNELS, ge=1, le=MAX_CHANNELS, description="maps (or values) shown per layer"
    )


class CamRequest(Pixels):
    class_index: int | None = Field(None, description="class to explain; default: predicted")
    layer: str | None = None
    colormap: Literal["viridis", "jet"] = Field("viridis", description="viridis: colour-blind safe")


class KernelRequest(Pixels):
    layer: str
    channel: int = Field(..., ge=0, description="output channel (1-D layers: output index)")
    y: int = Field(..., ge=0, description="row (0 for 1-D layers)")
    x: int = Field(..., ge=0, description="column (0 for 1-D layers)")


class ContributionsRequest(Pixels):
    layer: str = Field(..., description="a convolution step")
    channel: int = Field(..., ge=0, description="its output channel")
    limit: int = Field(16, ge=1, le=64, description="input channels shown (the largest first)")


class GradientRequest(Pixels):
    layer: str = Field(..., description="a convolution or linear step (or a pooling module)")
    channel: int = Field(..., ge=0, description="its output channel")
    class_index: int | None = Field(None, description="the loss's target; default: predicted")


class BackpropRequest(Pixels):
    class_index: int | None = Field(None, description="the loss's target; default: predicted")
    lr: float | None = Field(
        None, gt=0, le=MAX_LR, description="the step's learning rate; default: the run's"
    )


@router.get("/api/runs")
def list_runs(service: Explorer = Depends(explorer)) -> list[dict[str, Any]]:
    """The runs this server shows."""
    return service.describe()


@router.get("/api/runs/{name}/summary")
def run_summary(name: str, service: Explorer = Depends(explorer)) -> dict[str, Any]:
    """The layer table: shapes, formula with numbers, parameters, multiply-adds, RF."""
    return service.summary(name)


@router.get("/api/runs/{name}/sample/{index}")
def sample(name: str, index: int, service: Explorer = Depends(explorer)) -> dict[str, Any]:
    """Test-set image ``index`` with its true label."""
    return service.sample(name, index)


FIT = (
    "crop (default): keep the aspect ratio, resize the shorter side and cut out the centre, as "
    "`cnnlab predict` reads photos; squash: resize the whole picture to the input's square"
)


@router.post(
    "/api/runs/{name}/upload",
    description=f"Decode an uploaded {formats()} picture (at most {mib(MAX_UPLOAD_BYTES)}, "
    f"{MAX_UPLOAD_PIXELS:,} pixels) into this run's input: transparent pixels laid on white, "
    "colours converted, resized and centre-cropped (or squashed with ``fit=squash``), with a "
    "note on each change.",
)
def upload(
    name: str,
    file: UploadFile = File(...),
    fit: Literal[FITS] | None = Query(None, description=FIT),  # type: ignore[valid-type]
    fit_field: Literal[FITS] | None = Form(None, alias="fit", description=FIT),  # type: ignore[valid-type]
    service: Explorer = Depends(explorer),
) -> dict[str, Any]:
    """Decode an uploaded picture into this run's input format."""
    return service.upload(name, file.file, fit or fit_field or "crop")


@router.post("/api/runs/{name}/analyze", response_model=None)
def analyze(name: str, body: AnalyzeRequest, service: Explorer = Depends(explorer)) -> JSONResponse:
    """Class probabilities, logits and every layer's output: for a map layer the first
    ``channels`` maps side by side in one PNG strip (``sprite``; map ``k`` is the ``k``-th
    ``W``-wide tile), each scaled to its own range (``maps``: min, max, constant; a constant
    map is mid-gray), for a vector layer its values; each with kind, label and shape."""
    return service.analyze(name, body.pixels, body.channels)


@router.post("/api/runs/{name}/cam")
def cam(name: str, body: CamRequest, service: Explorer = Depends(explorer)) -> dict[str, Any]:
    """Grad-CAM for a class over the image (overlay and heat map as PNGs)."""
    return service.cam(name, body.pixels, body.class_index, body.layer, body.colormap)


@router.post("/api/runs/{name}/explain")
def explain(
    name: str, body: KernelRequest, service: Explorer = Depends(explorer)
) -> dict[str, Any]:
    """One output number of any layer computed in the open from the layer's real input
    (convolution: every input channel's products and subtotal; ReLU/activation: before and
    after; pooling: the window and its winner or mean; batch norm: its affine and statistics;
    linear: the largest terms of the dot product; flatten: the source position; softmax: logits
    to probabilities; a residual add: its terms; a concatenation: the input a channel came
    from), with its window on each input and its receptive field on the image (``unknown`` with
    the reason when a step on the way cannot be followed). Step names are those of /analyze: a
    module called twice is two steps, ``name#1`` and ``name#2``."""
    return service.explain(name, body.pixels, body.layer, body.channel, body.y, body.x)


@router.post("/api/runs/{name}/contributions")
def contributions(
    name: str, body: ContributionsRequest, service: Explorer = Depends(explorer)
) -> dict[str, Any]:
    """A convolution's output map taken apart: each input channel's map (that channel
    correlated with its kernel slice), the bias, and their sum, which is the output map; the
    ``limit`` input channels that contribute most, as one sprite on one shared scale."""
    return service.contributions(name, body.pixels, body.layer, body.channel, body.limit)


@router.post("/api/runs/{name}/gradient")
def gradient(
    name: str, body: GradientRequest, service: Explorer = Depends(explorer)
) -> dict[str, Any]:
    """The cross-entropy loss for a class and its gradient with respect to one convolution
    output channel's kernel (every input channel) and bias, with the upstream gradient map."""
    return service.gradient(name, body.pixels, body.layer, body.channel, body.class_index)


@router.get("/api/runs/{name}/report")
def report(name: str, service: Explorer = Depends(explorer)) -> dict[str, Any]:
    """A trained run's learning curves, confusion matrix, accuracy per class and most
    confident mistakes on the first ``images`` of the ``test_images`` test images, with their
    overall ``accuracy`` and each mistake's test-image ``index`` (computed once)."""
    return service.report(name)


@router.get("/api/presets")
def worked_examples() -> list[dict[str, Any]]:
    """The course's worked examples for the playground, answers computed by cnnlab."""
    return presets()


@router.post("/api/runs/{name}/kernel")
def kernel(name: str, body: KernelRequest, service: Explorer = Depends(explorer)) -> dict[str, Any]:
    """One output pixel of a convolution computed in the open: the kernel, the input
    patch under it, their element-wise products and the sum (+ bias)."""
    return service.kernel(name, body.pixels, body.layer, body.channel, body.y, body.x)


@router.get("/api/arithmetic")
def arithmetic(
    n: int = 28,
    kernel: int = 5,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    in_channels: int = 1,
    out_channels: int = 1,
) -> dict[str, Any]:
    """Output size of a 2-D convolution with the formula filled in (or what is wrong and
    how to fix it), its parameters and multiply-adds."""
    try:
        return conv_arithmetic(n, kernel, stride, padding, dilation, in_channels, out_channels)
    except OutOfBounds as error:
        raise Refusal(422, str(error)) from None


@router.get("/api/backprop")
def backprop_walk(
    size: int = Query(6, ge=SIZES[0], le=SIZES[1], description="input side N (even)"),
    outputs: int = Query(2, ge=OUTPUTS[0], le=OUTPUTS[1], description="output units R"),
    activation: Literal[ACTIVATIONS] = "sigmoid",  # type: ignore[valid-type]
    pool: Literal[POOLS] = Query("mean", description="2x2 pooling"),  # type: ignore[valid-type]
    cost: Literal[COSTS] = "squared",  # type: ignore[valid-type]
    target: int = Query(0, ge=0, description="the true class r, 0..R-1"),
    seed: int = Query(0, ge=0, lt=SEED_LIMIT, description="picks the example's numbers"),
) -> dict[str, Any]:
    """The course's small example network (an N x N input, one 3x3 filter as a correlation,
    the activation, 2x2 pooling, flatten, a fully connected output layer) through the forward
    pass and steps 1-5 of the backward pass (CBP1, BP1-BP4, up-sampling through the pooling,
    the filter rotated by 180 degrees), every number, each gradient checked against torch
    (``cnnlab backprop --json``)."""
    return example_walk(size, outputs, activation, pool, cost, target, seed)


@router.post("/api/runs/{name}/backprop")
def backprop_step(
    name: str, body: BackpropRequest, service: Explorer = Depends(explorer)
) -> dict[str, Any]:
    """One SGD step of the run on one image, layer by layer from the output down: each
    layer's delta size, its rule in words, the rule checked against torch's gradient, the
    update size lr x |dL/dW| beside |W|, for convolutions a filter and its 180-degree rotation,
    and the loss before and after the step (taken on a copy of the model)."""
    return one_sgd_step(service, name, body.pixels, body.class_index, body.lr)
