"""The course's worked examples (``cnnlab example``): every answer cnnlab prints is checked
against PyTorch computing it independently from the preset's inputs (never against numbers
typed into a test), and the explanation's arithmetic is checked to add up."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect.examples import EXAMPLES, get_example, worked_example


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[None, None]


def _cells(worked) -> dict[tuple[int, int], tuple[str, float]]:
    """``out[i,j] = <sum of products> = v`` lines: the expression and the value shown."""
    found = {}
    for line in worked.lines:
        m = re.match(r"\s*out\[(\d+),(\d+)\] = ([-\d.* +]+) = ([-\d.e+]+)", line)
        if m:
            found[int(m[1]), int(m[2])] = (m[3], float(m[4]))
    return found


def _correlate(inputs) -> torch.Tensor:
    image, kernel = _tensor(inputs["image"]), _tensor(inputs["kernel"])
    return F.conv2d(image, kernel, stride=inputs["stride"], padding=inputs["padding"])[0, 0]


def _check_correlation(worked) -> None:
    expected = _correlate(worked.inputs)
    assert torch.equal(torch.tensor(worked.results["feature_map"], dtype=torch.float64), expected)
    cells = _cells(worked)
    assert set(cells) == {
        (i, j) for i in range(expected.shape[0]) for j in range(expected.shape[1])
    }
    kernel = torch.tensor(worked.inputs["kernel"]).flatten().tolist()
    for (i, j), (expression, shown) in cells.items():
        products = [p.split("*") for p in expression.split(" + ")]
        assert [float(k) for _, k in products] == kernel  # the kernel, in reading order
        assert sum(float(a) * float(b) for a, b in products) == shown == expected[i, j].item()


def test_correlation_preset_is_the_textbook_example():
    example = get_example("correlation")
    assert example.inputs["kernel"] == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    worked = example.solve()
    _check_correlation(worked)
    out = _correlate(example.inputs).shape[0]
    assert f"= {out}" in next(line for line in worked.lines if line.startswith("output size"))


def test_correlation_answers_follow_the_inputs():
    """Other inputs give other answers: nothing in the output is a stored constant."""
    example = get_example("correlation")
    torch.manual_seed(0)
    image = torch.randint(-3, 4, (6, 7)).tolist()
    kernel = [[0, 2, -1], [1, 0, 0], [3, -2, 1]]
    for stride, padding in [(1, 0), (2, 1)]:
        inputs = {"image": image, "kernel": kernel, "stride": stride, "padding": padding}
        _check_correlation(example.solve(inputs))


@pytest.mark.parametrize("shift", [0, 5])
def test_pooling_table_matches_torch(shift):
    example = get_example("pooling")
    inputs = dict(example.inputs)
    inputs["input"] = (torch.tensor(inputs["input"]) * (1 + shift) - shift).tolist()
    worked = example.solve(inputs)
    x, k, s = _tensor(inputs["input"]), inputs["window"], inputs["stride"]
    expected = {
        "max": F.max_pool2d(x, k, s),
        "average": F.avg_pool2d(x, k, s),
        "min": -F.max_pool2d(-x, k, s),
    }
    for kind, table in expected.items():
        assert torch.allclose(torch.tensor(worked.results[kind], dtype=torch.float64), table[0, 0])
    # each window's line: its values, and the three answers computed from them
    windows = [line for line in worked.lines if line.lstrip().startswith("rows ")]
    assert len(windows) == table.numel()
    for line, flat in zip(windows, range(table.numel())):
        i, j = divmod(flat, table.shape[-1])
        for kind in ("max", "min"):
            assert f"{kind} {expected[kind][0, 0, i, j].item():g}" in line
        assert f"= {expected['average'][0, 0, i, j].item():g}, min" in line


def test_padding_stride_output_size_matches_torch():
    example = get_example("padding-stride")
    worked = example.solve()
    i = example.inputs
    size, kernel, stride, padding = i["size"], i["kernel"], i["stride"], i["padding"]
    ones = torch.ones(1, 1, size, size, dtype=torch.float64)
    seen = F.conv2d(
        ones, torch.ones(1, 1, kernel, kernel, dtype=torch.float64), None, stride, padding
    )
    out = seen.shape[-1]
    assert worked.results["output_size"] == out
    assert torch.equal(torch.tensor(worked.results["pixels_seen"], dtype=torch.float64), seen[0, 0])
    assert any(line.endswith(f") / {stride} + 1 = {out}") for line in worked.lines)
    assert sum(bool(re.match(r"\s+output \d+: input rows", line)) for line in worked.lines) == out


def _counted(designs: dict[str, str], shape) -> dict[str, tuple[int, int]]:
    """Multiply-adds (PyTorch's flop counter / 2) and parameters of the designs, built as
    nn.Conv2d layers from their specs."""
    counted = {}
    for label, specs in designs.items():
        layers, channels = [], shape[0]
        for out, k in re.findall(r"conv\((\d+),(\d+)", specs):
            layers.append(nn.Conv2d(channels, int(out), int(k), padding="same"))
            channels = int(out)
        model = nn.Sequential(*layers)
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *shape))
        params = sum(p.numel() for p in model.parameters())
        counted[label] = (counter.get_total_flops() // 2, params)
    return counted


def test_inception_cost_matches_pytorchs_flop_counter():
    example = get_example("inception-5x5")
    worked = example.solve()
    counted = _counted(example.inputs["designs"], example.inputs["input"])
    for label, (macs, params) in counted.items():
        assert worked.results["designs"][label] == {"macs": macs, "params": params}
        assert any(
            "total multiply-adds: " in line and f"{macs:,} (~" in line for line in worked.lines
        )
    (direct, _), (reduced, _) = counted.values()
    assert worked.results["ratio"] == pytest.approx(direct / reduced)
    # the course's round figures: about 120M, and about 12.4M with the reduction
    assert round(direct / 1e6) == 120 and round(reduced / 1e5) == 124


def test_parameter_count_matches_an_nn_conv2d():
    example = get_example("parameters")
    i = example.inputs
    conv = nn.Conv2d(i["in_channels"], i["filters"], i["kernel"])
    total = sum(p.numel() for p in conv.parameters())
    worked = example.solve()
    assert worked.results["params"] == total
    assert worked.results["weights_per_filter"] == conv.weight[0].numel()
    assert any(
        line.endswith(
            f"= {total:,} parameters ({conv.weight.numel():,} weights, {conv.bias.numel()} biases)"
        )
        for line in worked.lines
    )
    other = example.solve({**i, "filters": 64, "in_channels": 16, "kernel": 3})
    assert other.results["params"] == sum(p.numel() for p in nn.Conv2d(16, 64, 3).parameters())


def test_presets_hold_only_inputs():
    answers = {"feature_map", "output_size", "params", "macs", "max", "min", "average", "ratio"}
    for example in EXAMPLES.values():
        assert not answers & set(example.inputs), example.name
        assert json.loads(json.dumps(example.inputs)) == example.inputs  # plain data


def test_cli_lists_solves_and_refuses(capsys):
    assert main(["example", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in EXAMPLES)
    assert main(["example", "correlation"]) == 0
    out = capsys.readouterr().out
    assert str(worked_example("correlation")) in out and "out[2,2] = " in out
    assert main(["example", "inception-5x5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == worked_example("inception-5x5").to_dict()
    assert main(["example", "pooling-table"]) == 2
    err = capsys.readouterr().err
    assert "example 'pooling-table' is not a preset" in err and err.count("\n") == 1
    with pytest.raises(CnnlabError, match="Known: correlation"):
        get_example("nope")
