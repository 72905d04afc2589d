"""One forward pass of any CNN recorded step by step, so that every number in it can be traced
to the numbers it was computed from.

A *step* is one call of a module (a module called twice, such as a ReLU shared by two places,
gives two steps: ``relu#1`` and ``relu#2``) or one functional operation that ``torch.fx`` sees
between modules: above all a residual network's ``x + identity`` (``layer1.0.add``), and
concatenations, flattens, functional ReLUs and pools. Steps come in execution order, each with
its output (for the one image), the steps it read (``sources``, ``"input"`` for the model's
input) and its kind (``conv``, ``add``, ``concat``, ...).

    trace = record_trace(model, batch)        # batch: 1 x C x H x W, preprocessed
    trace.names()                             # every step, in execution order
    explain_value(trace, "layer1.0.add", 3, 5, 7)   # see :mod:`.trace_explain`

A model that ``torch.fx`` cannot trace (its forward branches on tensor values) is recorded by
module hooks instead: its steps are module calls only, and each step's source is found from the
numbers (the latest earlier step whose output equals its input).
"""

from __future__ import annotations

import difflib
import operator
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .._tracing import model_call, tracing
from ..errors import CnnlabError, UnknownNameError, first_line
from ..model_interface import is_fx_leaf
from .hooks import evaluating, forward_hooks
from .trace_kinds import MODULE_KINDS, function_step, module_kind

INPUT = "input"
SOFTMAX = "softmax"  # the softmax of the logits, added when a model has no softmax of its own


@dataclass
class Step:
    """One call in the forward pass: what it is and what it produced for the one image."""

    name: str
    kind: str  # see :func:`step_kind`
    op: str  # the module's class name or the function's name ("Conv2d", "add", "cat")
    module: nn.Module | None  # the module called, or an equivalent one for a function
    sources: list[str]  # the steps whose outputs it read, in argument order
    output: torch.Tensor  # batch item 0, detached
    call: tuple[Any, dict[str, Any]] | None = None  # (args, kwargs), tensors as Source(i)
    overrides: dict[int, torch.Tensor] = field(default_factory=dict)  # sources changed in place
    target: Any = None  # the function (or method name) of a functional step

    def replay(self, *tensors: torch.Tensor) -> Any:
        """The step's call again on other inputs (each with its batch axis), e.g. on tensors of
        indices to find where a reshape took each value from."""
        if self.call is None:
            return self.module(*tensors)
        args, kwargs = _fill(self.call, tensors)
        if self.target is None:
            return self.module(*args, **kwargs)
        if isinstance(self.target, str):
            return getattr(args[0], self.target)(*args[1:], **kwargs)
        return self.target(*args, **kwargs)

    @property
    def shape(self) -> list[int]:
        return list(self.output.shape)


@dataclass(frozen=True)
class Source:
    """Where a step's call took its ``index``-th tensor input."""

    index: int


@dataclass
class Trace:
    """Every step of one forward pass; ``image`` is the preprocessed model input (C x H x W),
    ``logits`` the model's output (1 x K)."""

    model: nn.Module
    batch: torch.Tensor
    steps: dict[str, Step]
    logits: torch.Tensor
    traced: bool  # by torch.fx (functional steps included) or by module hooks only
    why_hooks: str | None = None  # why torch.fx could not trace it

    @property
    def image(self) -> torch.Tensor:
        return self.batch[0]

    def names(self) -> list[str]:
        return list(self.steps)

    def step(self, name: str) -> Step:
        """The step called ``name``; an unknown name is answered with close ones."""
        if name in self.steps:
            return self.steps[name]
        close = difflib.get_close_matches(name, list(self.steps), n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(list(self.steps)[:12]) + (" ..." if len(self.steps) > 12 else "")
        raise UnknownNameError(
            f"step {_short(name)}: no step of that name in this forward pass.{hint} Steps "
            f"(list them all with `cnnlab trace SOURCE IMAGE`): {shown}"
        )

    def value_of(self, name: str) -> torch.Tensor:
        """The output of step ``name`` or, for :data:`INPUT`, the model input."""
        return self.image if name == INPUT else self.steps[name].output

    def inputs(self, step: Step) -> list[torch.Tensor]:
        """The values ``step`` read, one per source (as they were when it ran)."""
        return [step.overrides.get(i, self.value_of(s)) for i, s in enumerate(step.sources)]

    def readers(self, name: str) -> list[str]:
        """The steps that read step ``name``'s output."""
        return [s.name for s in self.steps.values() if name in s.sources]


def _short(text: str, limit: int = 60) -> str:
    """A user's value in an error message: whole when short, else its start and its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


# ----------------------------------------------------------------------------- recording


class _LeafTracer(fx.Tracer):
    """Keeps modules marked ``fx_leaf = True`` (forwards that branch on the input's size)
    as one call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        known = tuple(t for _, types in MODULE_KINDS for t in types)  # subclasses too
        return is_fx_leaf(m) or isinstance(m, known) or super().is_leaf_module(m, qualname)


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph(model: nn.Module) -> fx.GraphModule | str:
    """The model's torch.fx graph (traced once per model, in eval mode), or why it fails."""
    known = _GRAPHS.get(model)
    if known is not None:
        return known
    try:
        with tracing(), evaluating(model):
            graph = _LeafTracer().trace(model)
        found: fx.GraphModule | str = fx.GraphModule(model, graph)
    except Exception as error:  # any failure of fx: fall back to module hooks
        found = f"{type(error).__name__}: {first_line(error)}"
    _GRAPHS[model] = found
    return found


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    target = node.target
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target)).strip("_")


def _scope(node: fx.Node) -> str:
    """The module whose forward made this functional call (``layer1.0``), or ``""``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    last = list(stack)[-1]
    return str(last).split("@")[0]


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, model: nn.Module) -> None:
        super().__init__(gm)
        self.model_modules = dict(model.named_modules())
        self.values: dict[fx.Node, torch.Tensor] = {}  # node -> recorded output (item 0)
        self.versions: dict[fx.Node, int] = {}  # its tensor's version counter then
        self.step_of: dict[fx.Node, str] = {}
        self.sources_of: dict[fx.Node, list[str]] = {}  # non-step nodes: the steps under them
        self.steps: list[Step] = []
        self.calls: Counter = Counter()

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        tensors = [a for a in _flatten((n.args, n.kwargs)) if isinstance(a, fx.Node)]
        live = [v for v in _flatten((args, kwargs)) if isinstance(v, torch.Tensor)]
        changed = {  # inputs changed in place since their step recorded them
            i: value[0].detach().clone()
            for i, (node, value) in enumerate(zip(tensors, live))
            if node in self.versions
            and value.shape[0] == 1
            and value._version != self.versions[node]
        }
        if len(tensors) != len(live):  # a non-tensor among the inputs: compare the values
            changed = {}
        result = getattr(self, n.op)(n.target, args, kwargs)
        if n.op == "placeholder":
            self.step_of[n] = INPUT
            self.values[n] = result[0].detach().clone()
            self.versions[n] = result._version
            return result
        sources: list[str] = []
        for node in tensors:
            if node in self.step_of:
                sources.append(self.step_of[node])
            else:
                sources.extend(self.sources_of.get(node, []))
        is_step = (
            n.op in ("call_module", "call_function", "call_method")
            and isinstance(result, torch.Tensor)
            and result.ndim >= 1
            and result.shape[0] == 1
        )
        if not is_step:
            self.sources_of[n] = sources
            return result
        direct = all(node in self.step_of for node in tensors) and len(tensors) == len(live)
        overrides = changed if direct else {}
        self.values[n] = result[0].detach().clone()
        self.versions[n] = result._version
        self._add_step(n, args, kwargs, sources, overrides, result)
        return result

    def _add_step(self, n, args, kwargs, sources, overrides, result) -> None:
        if n.op == "call_module":
            base = str(n.target)
            module = self.model_modules.get(base) or self.module.get_submodule(base)
            kind, op, equivalent = module_kind(module), type(module).__name__, module
        else:
            op = _op_name(n)
            scope = _scope(n)
            base = f"{scope}.{op}" if scope else op
            if base in self.model_modules:
                base += "()"
            kind, equivalent = function_step(op, args, kwargs)
            if kind == "reshape" and result.ndim == 2:
                kind = "flatten"
        self.calls[base] += 1
        count = self.calls[base]
        name = base if count == 1 else f"{base}#{count}"
        if count == 2:  # the first call of a module called twice becomes name#1
            for step in self.steps:
                if step.name == base:
                    step.name = f"{base}#1"
                    for node, known in self.step_of.items():
                        if known == base:
                            self.step_of[node] = step.name
                    for other in self.steps:
                        other.sources = [step.name if s == base else s for s in other.sources]
        marked = _mark((args, kwargs))
        self.step_of[n] = name
        step = Step(name, kind, op, equivalent, sources, self.values[n], marked, overrides)
        if n.op != "call_module":
            step.target = n.target
        self.steps.append(step)


def _fill(call: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
    if isinstance(call, Source):
        return tensors[call.index]
    if isinstance(call, (list, tuple)) and not hasattr(call, "_fields"):
        return type(call)(_fill(v, tensors) for v in call)
    if isinstance(call, dict):
        return {k: _fill(v, tensors) for k, v in call.items()}
    return call


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flatten(item)]
    return [value]


def _mark(call: Any) -> Any:
    """The call's arguments with every tensor replaced by ``Source(i)`` in argument order."""
    counter = iter(range(10**9))

    def swap(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return Source(next(counter))
        if isinstance(value, (list, tuple)):
            return type(value)(swap(v) for v in value) if not hasattr(value, "_fields") else value
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    return swap(call)


def record_trace(model: nn.Module, batch: torch.Tensor) -> Trace:
    """Run ``model`` (in eval mode, without gradients) on ``batch`` (1 x C x H x W, the
    preprocessed image) step by step. The model's graph is traced once (under
    :func:`cnnlab._tracing.tracing`) and each run holds :func:`cnnlab._tracing.model_call`, so
    call it without holding ``model_call`` yourself."""
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise CnnlabError(
            f"batch of shape {list(batch.shape)}: expected one preprocessed image as 1 x C x H x "
            "W; add the batch axis with image[None]"
        )
    graph = _graph(model)
    if isinstance(graph, str):
        return _record_by_hooks(model, batch, graph)
    recorder = _Recorder(graph, model)
    with model_call(), torch.no_grad(), evaluating(model):
        logits = recorder.run(batch)
    if not isinstance(logits, torch.Tensor):  # GoogLeNet in training returns a tuple
        logits = logits[0]
    steps = {s.name: s for s in recorder.steps}
    return _with_softmax(Trace(model, batch.detach(), steps, logits.detach(), traced=True))


def _record_by_hooks(model: nn.Module, batch: torch.Tensor, why: str) -> Trace:
    """Module calls only, each source found from the numbers."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    calls: list[tuple[str, nn.Module, torch.Tensor | None, torch.Tensor]] = []
    pending: dict[int, torch.Tensor | None] = {}

    def before(module: nn.Module, args: tuple) -> None:
        given = args[0] if args and isinstance(args[0], torch.Tensor) else None
        pending[id(module)] = given[0].detach().clone() if given is not None else None

    def after(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim >= 1 and output.shape[0] == 1:
                calls.append((name, module, pending.get(id(module)), output[0].detach().clone()))

        return hook

    hooks = forward_hooks(
        [(module, after(name)) for name, module in leaves.items()],
        [(module, before) for module in leaves.values()],
    )
    with hooks, model_call(), torch.no_grad(), evaluating(model):
        logits = model(batch)
    counts = Counter(name for name, *_ in calls)
    seen: Counter = Counter()
    steps: dict[str, Step] = {}
    image = batch[0]
    for name, module, given, output in calls:
        seen[name] += 1
        unique = name if counts[name] == 1 else f"{name}#{seen[name]}"
        sources: list[str] = []
        if given is not None:
            earlier = [s for s in reversed(steps.values()) if _same(s.output, given)]
            if earlier:
                sources = [earlier[0].name]
            elif _same(image, given):
                sources = [INPUT]
        step = Step(unique, module_kind(module), type(module).__name__, module, sources, output)
        if given is not None and sources:
            step.overrides = {0: given}  # as it reached the module (maybe reshaped on the way)
            step.call = ((Source(0),), {})
        steps[unique] = step
    trace = Trace(model, batch.detach(), steps, logits.detach(), traced=False, why_hooks=why)
    return _with_softmax(trace)


def _with_softmax(trace: Trace) -> Trace:
    """A last step :data:`SOFTMAX`, the class probabilities, when the model ends in logits (a
    binary head's one logit ``z`` is read as the two scores ``[-z/2, z/2]``)."""
    from ..models.binary import class_logits

    if trace.logits.ndim != 2 or any(s.kind == "softmax" for s in trace.steps.values()):
        return trace
    last = [s.name for s in reversed(trace.steps.values()) if _same(s.output, trace.logits[0])]
    scores = class_logits(trace.logits)[0]
    step = Step(
        SOFTMAX,
        "softmax",
        "softmax of the logits",
        nn.Softmax(0),
        last[:1],
        torch.softmax(scores, 0),
        call=((Source(0),), {}),
        overrides={0: scores} if last else {},
    )
    trace.steps[SOFTMAX if SOFTMAX not in trace.steps else SOFTMAX + "()"] = step
    step.name = list(trace.steps)[-1]
    return trace


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.numel() == b.numel() and torch.equal(a.flatten(), b.flatten())
