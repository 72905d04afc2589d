"""`cnnlab reproduce`: real trainings, and a Markdown table of reference vs cnnlab figures."""

from __future__ import annotations

from cnnlab.cli import main
from cnnlab.reproduce import EXPERIMENTS, markdown


def test_reproduce_quick_writes_the_table(tmp_path, data_dir, capsys):
    out = tmp_path / "table.md"
    args = [
        "reproduce",
        "--quick",
        "--only",
        "fashion-mlp",
        "--runs-dir",
        str(tmp_path),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = out.read_text()
    assert (
        "| fully connected network on Fashion-MNIST, 5 epochs | usual tutorials: about 86%" in text
    )
    row = [line for line in text.splitlines() if line.startswith("| fully")][0]
    accuracy = float(row.split("|")[3].strip().rstrip("%")) / 100
    assert 0.75 < accuracy < 0.95  # one epoch on 20,000 real images
    assert "Why the figures differ" in text
    assert main(args) == 0  # a second run gets its own folder, nothing is overwritten
    assert len(list((tmp_path / "reproduce").iterdir())) == 2
    assert main(["reproduce", "--only", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "experiments are lenet5-mnist" in capsys.readouterr().err


def test_every_experiment_names_its_reference():
    keys = [e.key for e in EXPERIMENTS]
    assert keys == [
        "lenet5-mnist",
        "fashion-mlp",
        "fashion-cnn",
        "cifar-cifar_plain7",
        "cifar-cifar_residual",
        "cifar-cifar_residual_pool",
    ]
    rows = [
        {
            "what": e.what,
            "reference": e.reference,
            "cnnlab_acc": 0.5,
            "difference": -0.1,
            "seconds": 1.0,
            "settings": {"epochs": 1},
            "note": "",
        }
        for e in EXPERIMENTS
    ]
    table = markdown(rows, quick=False)
    assert "0.95% test error" in table and "71.7%" in table and "76.0%" in table
