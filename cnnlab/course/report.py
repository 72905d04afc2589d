"""The report of ``cnnlab reproduce``: a Markdown table (per experiment: the material's figure
and cnnlab's; per epoch: the material's log, the course's own code run here and cnnlab), the
rows as JSON, and one PNG per experiment that overlays the curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import run_folder
from ..machine import provenance
from ..train.config import TrainConfig
from . import e2


def data_description(config: TrainConfig) -> str:
    if config.dataset != "cifar10":
        what = config.dataset
    elif config.data_variant == "subset":
        what = "CIFAR-10 exact-pixel 4,000/1,000 subset"
    else:
        what = "CIFAR-10 JPEG copy (lossy), 50,000/10,000"
    cut = [
        f"{n:,} {split}"
        for split, n in (("train", config.train_subset), ("test", config.test_subset))
        if n
    ]
    return what + (f", cut to {' / '.join(cut)} images" if cut else "")


def markdown(rows: list[dict[str, Any]], quick: bool) -> str:
    lines = [
        f"# cnnlab reproduce{' --quick' if quick else ''}",
        "",
        "| experiment | the material | cnnlab | difference | data | time |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["key"] in e2.KEYS:
            lines.append(
                f"| {r['what']} | {r['reference']} | {e2.ratio_text(r)} | - | "
                f"{data_description(TrainConfig(**r['config']))} | {r['seconds']:.0f} s |"
            )
            continue
        lines.append(
            f"| {r['what']} | {r['reference']} | {r['cnnlab_acc']:.2%} | "
            f"{100 * r['difference']:+.2f} points | {r['data']} | {r['seconds']:.0f} s |"
        )
    for r in rows:
        if r["key"] in e2.KEYS:
            lines += e2.markdown_lines(r)
        if r.get("logged"):
            lines += epoch_table(r)
    notes = [f"- {r['what']}: {r['note']}" for r in rows if r.get("note")]
    if quick:
        notes.append(
            "- --quick trains one epoch on small subsets: it checks the pipeline, not the figures"
        )
    if notes:
        lines += ["", "Why the figures differ:", "", *notes]
    return "\n".join(lines + measured_lines(rows)) + "\n"


def _measured(made: dict[str, Any]) -> str:
    threads = made.get("torch_threads", made.get("cpu_count"))
    return (
        f"{str(made.get('date', '?'))[:10]}, commit {made.get('commit', '?')}, "
        f"{made.get('cpu_model', '?')}{_vector(made)} ({threads} thread"
        f"{'' if threads == 1 else 's'}), "
        f"torch {made.get('torch', '?')}"
    )


def _vector(made: dict[str, Any]) -> str:
    return {"avx512f": ", AVX-512", "avx2": ", AVX2"}.get(made.get("cpu_vector", ""), "")


def measured_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Where and when the rows were measured: one line when they share it, else one per
    experiment (a report grown with ``--merge`` keeps each row's own)."""
    made = [(r["key"], _measured(r["provenance"])) for r in rows if r.get("provenance")]
    if not made:
        return []
    if len({m for _, m in made}) == 1:
        return ["", f"Measured {made[0][1]}."]
    return ["", "Measured:", "", *(f"- {key}: {m}" for key, m in made)]


def _pair(loss: float, acc: float) -> str:
    return f"{loss:.4f} / {acc:.2%}"


def epoch_table(r: dict[str, Any]) -> list[str]:
    """Per epoch, train loss / accuracy: the material's log, the course's code run here (where
    it ran) and cnnlab; then the test figures after the last epoch, and what the gaps mean."""
    code = r.get("course_code") or {}
    column = bool(code.get("epochs"))
    head = "| epoch | the material | " + ("the course's code here | " if column else "")
    lines = ["", f"{r['what']}, per epoch (train loss / train accuracy):", ""]
    lines += [head + "cnnlab |", "|---|---|" + ("---|" if column else "") + "---|"]
    for i, ours in enumerate(r["epochs"]):
        theirs = r["logged"][i] if i < len(r["logged"]) else None
        cells = [_pair(*theirs) if theirs else "-"]
        if column:
            keras = code["epochs"][i] if i < len(code["epochs"]) else None
            cells.append(_pair(keras["train_loss"], keras["train_acc"]) if keras else "-")
        cells.append(_pair(ours["train_loss"], ours["train_acc"]))
        lines.append(f"| {ours['epoch']:.0f} | " + " | ".join(cells) + " |")
    last = r["epochs"][-1]
    cells = [_pair(*r["logged_test"]) if r.get("logged_test") else "-"]
    if column:
        cells.append(_pair(code["epochs"][-1]["test_loss"], code["epochs"][-1]["test_acc"]))
    cells.append(_pair(last["test_loss"], last["test_acc"]))
    lines.append("| test | " + " | ".join(cells) + " |")
    if column:
        keras_acc = code["epochs"][-1]["test_acc"]
        lines += [
            "",
            f"The course's Keras code ran here on the same {code['train_images']:,} training "
            f"images (Keras {code['keras']}, torch backend, {code['seconds'] / 60:.0f} min): "
            f"{keras_acc:.2%} test, {100 * (keras_acc - r['reference_acc']):+.2f} points from the "
            "course's log (that gap is the data and the machine: the same code, other images, "
            "order and random numbers), and cnnlab "
            f"{100 * (last['test_acc'] - keras_acc):+.2f} points from it.",
        ]
    elif code.get("missing"):
        lines += ["", f"The course's code run here: {code['missing']}."]
    return lines + dead_table(r)


def dead_table(r: dict[str, Any]) -> list[str]:
    """The ReLU units each network ended with dead, layer by layer (input to output): the
    course's code run here beside cnnlab, where both were measured; then what a layer dead to
    its last unit means."""
    dead = r.get("dead_relus")
    if not dead:
        return []
    ours, theirs = list(dead["cnnlab"].items()), list((dead.get("course_code") or {}).items())
    both = len(theirs) == len(ours) and bool(theirs)
    lines = [
        "",
        f"ReLU units dead after training (0 for each of the first {dead['images']} test "
        "images: such a unit passes no gradient), input to output:",
        "",
        "| ReLU layer | " + ("the course's code here | " if both else "") + "cnnlab |",
        "|---|" + ("---|" if both else "") + "---|",
    ]
    for i, (name, share) in enumerate(ours):
        label = f"{i + 1}: {theirs[i][0]} / {name}" if both else f"{i + 1}: {name}"
        cells = ([f"{theirs[i][1]:.0%}"] if both else []) + [f"{share:.0%}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    columns = ([theirs] if both else []) + [ours]
    means = [sum(share for _, share in column) / len(column) for column in columns]
    lines.append("| mean over the layers | " + " | ".join(f"{m:.0%}" for m in means) + " |")
    if theirs and not both:
        lines += ["", f"The course's code has {len(theirs)} ReLU layers, cnnlab {len(ours)}: "
                  "not paired."]  # fmt: skip
    if dead.get("course_code_missing"):
        lines += ["", f"The course's code's dead units: {dead['course_code_missing']}."]
    for who, shares in (
        ("cnnlab's run", ours),
        ("The course's code run here", theirs if both else []),
    ):
        lines += _fully_dead_note(who, shares, [name for name, _ in ours])
    return lines


def _fully_dead_note(who: str, shares: list, names: list[str]) -> list[str]:
    """What a layer with every unit dead does: in a plain stack it cuts the gradient; inside
    a residual branch (cnnlab's ``.body.`` layers) the skip connection still carries both."""
    cut: list[str] = []
    bypassed: list[str] = []
    for i, (name, share) in enumerate(shares):
        if share >= 1:
            (bypassed if ".body." in names[i] else cut).append(f"{i + 1} ({name})")
    lines = []
    if cut:
        layers, it = _layers(cut)
        lines += [
            "",
            f"{who} ended with every unit of {layers} dead: no gradient passes below {it} "
            f"and the layers above see the same input for every image, so the network learns "
            "no more than how often each class occurs (loss ln 10 = 2.303 on CIFAR-10). That "
            "is the draw of its starting weights; another --seed draws others (`cnnlab "
            "lessons init-and-depth`).",
        ]
    if bypassed:
        layers, it = _layers(bypassed)
        lines += [
            "",
            f"{who} ended with every unit of {layers} dead, inside a residual branch: the "
            f"branch no longer depends on the image, and the skip connection around {it} still "
            "carries the signal and its gradient.",
        ]
    return lines


def _layers(labels: list[str]) -> tuple[str, str]:
    """``"ReLU layer 7 (x)", "it"`` or ``"ReLU layers 7 (x), 8 (y)", "them"``."""
    if len(labels) == 1:
        return f"ReLU layer {labels[0]}", "it"
    return f"ReLU layers {', '.join(labels)}", "them"


def plot(row: dict[str, Any], path: Path) -> None:
    """Test (and, where logged, train) accuracy per epoch: the material's against ours; for
    per-iteration logs, test accuracy per iteration with the material's final figure."""
    from ..inspect.plots import save_figure, subplots

    figure, axes = subplots(1, 1, figsize=(6, 4))
    if row["steps"]:
        axes.plot(
            [s["step"] for s in row["steps"]],
            [100 * s["test_acc"] for s in row["steps"]],
            "-",
            label="cnnlab test",
        )
        axes.set_xlabel("iteration")
    else:
        epochs = [e["epoch"] for e in row["epochs"]]
        axes.plot(epochs, [100 * e["train_acc"] for e in row["epochs"]], "-o", label="cnnlab train")
        axes.plot(epochs, [100 * e["test_acc"] for e in row["epochs"]], "-s", label="cnnlab test")
        if row["logged"]:
            logged = range(1, len(row["logged"]) + 1)
            axes.plot(logged, [100 * a for _, a in row["logged"]], "--o", label="material train")
        code = (row.get("course_code") or {}).get("epochs")
        if code:
            keras_epochs = [e["epoch"] for e in code]
            for what, marker in (("train", "^"), ("test", "v")):
                axes.plot(
                    keras_epochs,
                    [100 * e[f"{what}_acc"] for e in code],
                    f":{marker}",
                    label=f"course's code here, {what}",
                )
        axes.set_xlabel("epoch")
        axes.set_xticks(epochs)  # whole epochs only
    axes.axhline(100 * row["reference_acc"], color="gray", linestyle=":", label="material test")
    axes.set(ylabel="accuracy (%)", title=row["key"])
    axes.legend(fontsize=8)
    save_figure(figure, path)


def write_report(rows: list[dict[str, Any]], quick: bool, path: Path) -> str:
    """The Markdown table at ``path``, the rows as JSON beside it (same name, ``.json``; each
    with the :func:`cnnlab.machine.provenance` of the report, or the one it already carries:
    a row kept by :func:`kept_rows`), and one PNG per experiment (``NAME-KEY.png``)."""
    made = provenance()
    records = [{"provenance": made, **row} for row in rows]  # a kept row keeps its own
    text = markdown(records, quick)
    run_folder.write_text(path, text)
    run_folder.write_text(path.with_suffix(".json"), json.dumps(records, indent=2) + "\n")
    _draw(rows, path)
    return text


def _draw(rows: list[dict[str, Any]], path: Path) -> None:
    for row in rows:
        draw = e2.plot_e2 if row["key"] in e2.KEYS else plot
        draw(row, path.with_name(f"{path.stem}-{row['key']}.png"))


def _drawn(rows: list[dict[str, Any]], quick: bool) -> None:
    """Write the report of ``rows`` into a temporary folder: raises what writing it would."""
    import tempfile

    markdown(rows, quick)
    with tempfile.TemporaryDirectory() as folder:
        _draw(rows, Path(folder) / "check.md")


def kept_rows(out: Path, quick: bool, train_subset: int | None) -> list[dict[str, Any]]:
    """The rows of the report already at ``out`` (its ``.json``), for ``reproduce --merge``:
    each keeps the provenance it was measured with. Nothing when there is no report yet; a
    clear error when the file is not a report, or when its rows trained another way (quick or
    not, another ``--train-subset``) than this call, so that one report never mixes them."""
    from ..errors import CnnlabError

    source = out.with_suffix(".json")
    if not source.exists():
        return []
    try:
        rows = json.loads(source.read_text())
        if not isinstance(rows, list) or not all(isinstance(r.get("key"), str) for r in rows):
            raise TypeError("not a list of rows, each with its experiment's key")
        _drawn(rows, quick)  # now, not after hours of training
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        raise CnnlabError(
            f"--merge: {source} is not a cnnlab reproduce report ({type(err).__name__}: "
            f"{err}); expected the JSON list reproduce writes beside --out. Drop --merge to "
            "write a new report, or choose another --out"
        ) from err
    for row in rows:
        # rows from before the option was recorded: full mode, its cut is in the settings
        subset = row.get("train_subset", (row.get("settings") or {}).get("train_subset"))
        if bool(row.get("quick", False)) != quick or subset != train_subset:
            raise CnnlabError(
                f"--merge: {source} holds {row['key']} trained with "
                f"{'--quick' if row.get('quick') else 'the full recipe'}"
                f"{f' on {subset:,} images' if subset else ''}, this call trains "
                f"{'--quick' if quick else 'the full recipe'}"
                f"{f' on {train_subset:,} images' if train_subset else ''}: one report keeps "
                "one kind. Use the same options, or another --out"
            )
    return rows


def merge_rows(
    kept: list[dict[str, Any]], new: list[dict[str, Any]], order: list[str]
) -> list[dict[str, Any]]:
    """The kept rows with this call's rows in place of those of the same experiment, in the
    report's order (``order``: experiment keys)."""
    by_key = {row["key"]: row for row in kept}
    by_key.update({row["key"]: row for row in new})
    rank = {key: i for i, key in enumerate(order)}  # an experiment no longer listed goes last
    return sorted(by_key.values(), key=lambda r: rank.get(r["key"], len(order)))
