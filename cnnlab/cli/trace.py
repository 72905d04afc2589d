"""``cnnlab trace``: one number of any step of any CNN, computed again in the open from its real
input, with its window, its receptive field and (``--gradient``) its backward view."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import CnnlabError
from ._options import (
    SOURCE_HELP,
    add_data_options,
    add_run_options,
    add_source_options,
    input_image,
    load_any,
)

SHOWN_CHANNELS = 4  # input channels printed in full (products) by default


def add_trace(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="trace one number of any step of a CNN back to the numbers it came from",
        description="Without --step: every step of the forward pass in execution order (each "
        "module call, and the functional steps between modules such as a residual add), with "
        "its kind, output shape and the steps it reads. With --step: the output at --at "
        "(channel,row,column; a vector's index) computed again from the step's real input "
        "(a convolution's products and channel subtotals, a pooling window, a residual add's "
        "two terms, where a flattened value came from, ...), the window it reads on each input "
        "and its receptive field on the image. --gradient adds the step's backward view "
        "(convolution and linear layers: dL/dW, dL/db, the upstream gradient and dL/dx).",
    )
    p.add_argument("run", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("image", help="PNG/JPEG file, or test:N for a run's test image N")
    p.add_argument("--step", help="the step to explain (names as the list prints them)")
    p.add_argument(
        "--at",
        metavar="C,Y,X",
        help="output position: channel,row,column of a map, or the index of a vector "
        "(default: where the step's output is largest)",
    )
    p.add_argument("--gradient", action="store_true", help="also the step's backward view")
    p.add_argument(
        "--class",
        dest="class_index",
        type=int,
        default=None,
        help="the class whose loss --gradient differentiates (default: the predicted class)",
    )
    p.add_argument(
        "--all-channels",
        action="store_true",
        help=f"print every input channel's products (default: the first {SHOWN_CHANNELS})",
    )
    p.add_argument("--json", action="store_true", help="the whole answer as JSON")
    p.add_argument("--squash", action="store_true", help="squash the image instead of cropping")
    add_source_options(p)
    add_run_options(p)
    add_data_options(p, "data folder for test:N")
    p.set_defaults(handler=_trace)


def _position(text: str | None, step) -> tuple[int, int, int]:
    out = step.output
    if text is None:
        flat = int(out.argmax())
        if out.ndim == 3:
            c, rest = divmod(flat, out.shape[1] * out.shape[2])
            return c, rest // out.shape[2], rest % out.shape[2]
        return flat, 0, 0
    try:
        numbers = [int(v) for v in text.split(",")]
    except ValueError:
        numbers = []
    wanted = 3 if out.ndim == 3 else 1
    if len(numbers) != wanted:
        example = "0,5,7 (channel, row, column)" if wanted == 3 else "3 (the output's index)"
        raise CnnlabError(
            f"--at {text!r}: step {step.name} has output {list(out.shape)}; expected "
            f"{wanted} whole number(s), e.g. --at {example}"
        )
    return (*numbers, 0, 0)[:3] if wanted == 1 else tuple(numbers)  # type: ignore[return-value]


def _trace(args: argparse.Namespace) -> int:
    from ..inspect.trace import record_trace
    from ..inspect.trace_explain import explain_value
    from ..inspect.trace_gradient import step_gradient

    source = load_any(args, notes_to_stderr=args.json)
    image, label, _, _ = input_image(source, args.image, args.data_dir, args.squash)
    trace = record_trace(source.model, source.preprocess(image))
    if args.step is None:
        if args.json:
            print(json.dumps(_step_list(trace), indent=1))
        else:
            _print_steps(trace, source.label, label)
        return 0
    step = trace.step(args.step)
    c, y, x = _position(args.at, step)
    answer = explain_value(trace, step.name, c, y, x)
    if args.gradient:
        answer["gradient"] = step_gradient(trace, step.name, c, args.class_index)
    if args.json:
        print(json.dumps(answer))
        return 0
    _print_answer(answer, args.all_channels)
    return 0


def _step_list(trace) -> list[dict[str, Any]]:
    return [
        {"step": s.name, "kind": s.kind, "op": s.op, "shape": s.shape, "reads": s.sources}
        for s in trace.steps.values()
    ]


def _print_steps(trace, model: str, image: str) -> None:
    how = "torch.fx: module calls and the functional steps between them"
    if not trace.traced:
        how = f"module calls only (torch.fx could not trace it: {trace.why_hooks})"
    print(f"{model} on {image}: {len(trace.steps)} steps in execution order ({how})")
    width = max(len(s.name) for s in trace.steps.values())
    for i, s in enumerate(trace.steps.values(), 1):
        shape = "x".join(map(str, s.shape))
        reads = ", ".join(s.sources) or "?"
        mark = "   <- residual add" if s.kind == "add" and len(s.sources) == 2 else ""
        print(f"{i:>4}  {s.name:<{width}}  {s.kind:<10} {shape:<12} reads {reads}{mark}")
    print("explain one number: cnnlab trace SOURCE IMAGE --step NAME --at C,Y,X [--gradient]")


def _print_answer(answer: dict[str, Any], all_channels: bool) -> None:
    print(answer["text"])
    print(f"computed here: {answer['computed']:.6g}   the step gave: {answer['value']:.6g}")
    if "formula" in answer:
        print(f"formula: {answer['formula']}")
    for channel in answer.get("channels", [])[: None if all_channels else SHOWN_CHANNELS]:
        print(f"input channel {channel['index']}: subtotal {channel['subtotal']:.6g}")
        for name in ("patch", "kernel", "products"):
            rows = channel[name]
            print(
                f"  {name:<9}"
                + "\n           ".join(
                    " ".join(f"{v:>9.4g}" if v is not None else "      pad" for v in row)
                    for row in rows
                )
            )
    shown = len(answer.get("channels", []))
    if shown > SHOWN_CHANNELS and not all_channels:
        print(f"... {shown - SHOWN_CHANNELS} more input channels (--all-channels prints them)")
    for term in answer.get("top_terms", [])[:8]:
        print(
            f"  input {term['index']:>5}: {term['input']:.4g} x weight {term['weight']:.4g} "
            f"= {term['product']:.4g}"
        )
    for window in answer.get("windows", []):
        print(f"reads {_window_text(window)}")
    field = answer["receptive_field"]
    if "unknown" in field:
        print(f"receptive field: unknown ({field['unknown']})")
    else:
        whole = " (the whole image)" if field["whole"] else ""
        print(
            f"receptive field: image rows {field['y0']}..{field['y1'] - 1}, columns "
            f"{field['x0']}..{field['x1'] - 1} ({field['size'][0]}x{field['size'][1]} pixels)"
            f"{whole}"
        )
    gradient = answer.get("gradient")
    if gradient:
        print(f"gradient: {gradient['text']}")
        if gradient.get("has_bias", True):
            print(f"  dL/db = {gradient['bias_grad']:.6g}")


def _window_text(window: dict[str, Any]) -> str:
    where = window["step"]
    if window.get("all"):
        return f"all of {where}"
    if "y0" in window:
        channels = window.get("channels")
        which = f"channel {channels[0]}, " if channels and len(channels) == 1 else ""
        return (
            f"{where}: {which}rows {window['y0']}..{window['y1'] - 1}, columns "
            f"{window['x0']}..{window['x1'] - 1}"
        )
    return f"{where}: values {window['i0']}..{window['i1'] - 1}"
