"""The backprop panel's two answers, as JSON-ready dicts: the course's small example network
walked through the forward and backward pass (:mod:`cnnlab.inspect.backprop_walk`, the numbers
of ``cnnlab backprop``), and one real SGD step of a served run on one image, layer by layer
from the output down (:mod:`cnnlab.inspect.backprop_step`, ``cnnlab backprop SOURCE IMAGE``).

Every number comes from those inspect modules; this module checks the request, holds the run's
lock and turns non-finite numbers (a step that overflows) into ``null``, which JSON can carry.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import CnnlabError
from ..inspect.backprop_step import sgd_step
from ..inspect.backprop_walk import example_network, walk
from .problems import Refusal
from .service import Explorer

SIZES = (4, 32)  # the input side N, as `cnnlab backprop --size` takes it
OUTPUTS = (1, 10)  # output units R
SEED_LIMIT = 2**32
MAX_LR = 10.0  # a larger step only shows numbers overflowing
DEFAULT_LR = 0.01  # a model source has no training config to take the rate from


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (at any depth) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def example_walk(
    size: int = 6,
    outputs: int = 2,
    activation: str = "sigmoid",
    pool: str = "mean",
    cost: str = "squared",
    target: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Steps 0-5 of the course's derivation on its example network (``Walk.to_dict()``), each
    gradient checked against torch; a refusal (422) names a value out of range."""
    if not SIZES[0] <= size <= SIZES[1] or size % 2:
        raise Refusal(
            422,
            f"size {size}: expected an even input side from {SIZES[0]} to {SIZES[1]} (a 3x3 "
            "filter must leave an even map for 2x2 pooling); pick e.g. 6",
        )
    if not OUTPUTS[0] <= outputs <= OUTPUTS[1]:
        raise Refusal(422, f"outputs {outputs}: expected {OUTPUTS[0]}..{OUTPUTS[1]} output units")
    if not 0 <= target < outputs:
        raise Refusal(
            422,
            f"target {target}: expected a class 0..{outputs - 1} (one of the {outputs} outputs)",
        )
    if not 0 <= seed < SEED_LIMIT:
        raise Refusal(422, f"seed {seed}: expected 0 <= seed < 2**32; pick e.g. 0")
    try:
        net = example_network(size, outputs, seed, activation, pool, cost, target)
        return finite(walk(net).to_dict())
    except CnnlabError as why:
        raise Refusal(422, str(why)) from None


def run_lr(service: Explorer, name: str) -> tuple[float, list[str]]:
    """The learning rate a run trained with (a model source: :data:`DEFAULT_LR`) and a note
    when its optimizer was not plain SGD."""
    trained = service.get(name).source.run
    if trained is None:
        return DEFAULT_LR, [f"{name} is a model, not a trained run: lr {DEFAULT_LR:g}"]
    lr, optimizer = float(trained.config.lr), trained.config.optimizer
    if optimizer != "sgd":
        return lr, [f"the run trained with {optimizer}; this is one plain SGD step at its rate"]
    return lr, []


def one_sgd_step(
    service: Explorer,
    name: str,
    pixels: list[Any],
    class_index: int | None = None,
    lr: float | None = None,
) -> dict[str, Any]:
    """One SGD step of run ``name`` on ``pixels`` against ``class_index`` (default: the
    predicted class) at ``lr`` (default: the run's), as ``SgdStep.to_dict()`` plus ``classes``
    and ``notes``; the run's model itself is left as it was (the step is taken on a copy)."""
    run = service.get(name)
    image = service.as_input(run, pixels)
    trained = run.trained
    classes = list(trained.classes)
    if class_index is not None and not 0 <= class_index < len(classes):
        raise Refusal(
            422,
            f"class_index {class_index}: expected 0..{len(classes) - 1}; leave it out for the "
            "predicted class",
        )
    notes: list[str] = []
    if lr is None:
        lr, notes = run_lr(service, name)
    if not (math.isfinite(lr) and 0 < lr <= MAX_LR):
        raise Refusal(422, f"lr {lr}: expected a learning rate in (0, {MAX_LR:g}]; e.g. 0.01")
    try:
        with run.lock:  # the copy sgd_step makes must not carry another request's hooks
            step = sgd_step(trained.model, trained.preprocess(image[None]), class_index, lr)
    except CnnlabError as why:
        raise Refusal(422, str(why)) from None
    return finite(step.to_dict()) | {"classes": classes, "notes": notes}
