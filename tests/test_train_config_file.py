"""train --config FILE, what config.json records, the grouped help with every default, and
one name for -O."""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

import numpy
import pytest
import torch

import cnnlab
from cnnlab import run_folder
from cnnlab.cli import build_parser, main
from cnnlab.cli.train import train_settings
from cnnlab.train import TrainConfig
from cnnlab.train.recipes import RECIPES

SMALL = ["--train-subset", "400", "--test-subset", "100", "--batch-size", "32", "--no-progress"]
TIMING = ("train_seconds", "images_per_second")


def _settings(*argv: str) -> dict:
    """The TrainConfig settings `cnnlab train ARGV` would train with (nothing trained)."""
    args = build_parser().parse_args(["train", *argv])
    return TrainConfig(**train_settings(args, args.given)).__dict__


def _config(run_dir: Path) -> dict:
    return json.loads((run_dir / run_folder.CONFIG).read_text())


def _settings_of(run_dir: Path) -> dict:
    return {k: v for k, v in _config(run_dir).items() if k not in run_folder.RECORD_KEYS}


def _metrics(run_dir: Path) -> list[dict]:
    rows = run_folder.read_metrics(run_dir / run_folder.METRICS)
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_config_file_reruns_a_run_exactly_and_records_versions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    typed = ["train", *SMALL, "--epochs", "1", "--lr", "0.004", "-O", "modern=true"]
    typed += ["--val-split", "0.2", "--seed", "5", "--name", "first"]
    monkeypatch.setattr(sys, "argv", ["cnnlab", *typed])
    assert main(typed) == 0
    first = tmp_path / "runs" / "first"
    record = _config(first)
    assert record["command"] == ["cnnlab", *typed]
    assert record["versions"] == {
        "cnnlab": cnnlab.__version__,
        "torch": torch.__version__,
        "torchvision": record["versions"]["torchvision"],
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    assert re.fullmatch(r"\d+\.\d+.*", record["versions"]["torchvision"])

    again = ["train", "--config", str(first / run_folder.CONFIG), "--name", "again"]
    assert main(again) == 0
    rerun = tmp_path / "runs" / "again"
    assert _settings_of(rerun) == _settings_of(first)  # every setting, none left to defaults
    assert _metrics(rerun) == _metrics(first)  # the same seed and settings: the same run
    assert _config(rerun)["model_options"] == {"modern": True}


def test_flags_typed_beside_a_config_file_win_and_options_merge(tmp_path):
    settings = tmp_path / "s.yaml"
    settings.write_text("epochs: 4\nlr: 0.01\nmodel_options: {modern: true}\nprogress: false\n")
    got = _settings("--config", str(settings), "--lr", "0.02", "-O", "binary=false")
    assert (got["epochs"], got["lr"], got["progress"]) == (4, 0.02, False)
    assert got["model_options"] == {"modern": True, "binary": False}
    assert got["batch_size"] == TrainConfig.batch_size  # neither file nor flag: the default
    # a typed flag that equals TrainConfig's default still wins over the file
    assert _settings("--config", str(settings), "--lr", "0.001")["lr"] == 0.001
    json_file = tmp_path / "s.json"
    json_file.write_text(json.dumps({"epochs": 2, "versions": {"torch": "x"}, "command": []}))
    assert _settings("--config", str(json_file))["epochs"] == 2  # records are skipped


def test_recipe_then_config_file_then_typed_flags():
    """--recipe sets the base, a --config file's keys go over it, typed flags over both."""
    recipe = _settings("--recipe", "mnist-fast")
    assert (recipe["model"], recipe["epochs"], recipe["val_split"]) == ("lenet5", 2, 0.1)
    typed = _settings("--recipe", "mnist-fast", "--val-split", "0", "--epochs", "1")
    assert (typed["val_split"], typed["epochs"], typed["dataset"]) == (0.0, 1, "mnist")


def test_recipe_with_a_config_file_and_flags(tmp_path):
    settings = tmp_path / "s.yml"
    settings.write_text("epochs: 5\nbatch_size: 64\nmodel_options: {binary: false}\n")
    got = _settings("--recipe", "mnist-fast", "--config", str(settings), "--batch-size", "32")
    assert got["dataset"] == "mnist" and got["lr"] == RECIPES["mnist-fast"].settings["lr"]
    assert got["epochs"] == 5  # the file's, over the recipe's 2
    assert got["batch_size"] == 32  # typed, over the file's 64 and the recipe's 128
    assert got["model_options"] == {"modern": True, "binary": False}  # recipe's + file's


@pytest.mark.parametrize(
    "text, name, message",
    [
        ('{"epochs": 1, "lrr": 3}', "c.json", "unknown setting 'lrr'; expected TrainConfig"),
        ("[1, 2]", "c.json", "holds a list, expected a mapping"),
        ("{not json", "c.json", "not valid JSON"),
        ("a: [1", "c.yaml", "not valid YAML"),
        ('{"transfer": {"strategy": "head"}}', "c.json", "rerun it with `cnnlab transfer`"),
        ('{"lr": -1}', "c.json", "lr=-1"),
        (None, "missing.json", "cannot read it (no such file)"),
    ],
)
def test_bad_config_files_are_one_line_errors_and_write_nothing(
    tmp_path, monkeypatch, capsys, text, name, message
):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / name).write_text(text)
    assert main(["train", "--config", name, "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and name in err
    if "lrr" in message:
        assert "lr, momentum" in err  # the valid keys are listed
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_config_and_recipe_refused_with_resume(capsys):
    assert main(["train", "--config", "x.json", "--resume", "r"]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_help_is_grouped_and_every_option_shows_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    headers = re.findall(r"^(\w+):$", text, flags=re.MULTILINE)
    assert headers == ["options", "model", "data", "optimisation", "schedule", "output", "hardware"]
    entries = re.split(r"\n(?=  -)", text.split("\noptions:\n", 1)[1])
    options = [e for e in entries if e.lstrip().startswith("-") and "--help" not in e]
    assert len(options) >= 40
    for entry in options:
        flat = " ".join(entry.split())
        assert flat.count("(default: ") == 1, flat
        assert "(default: None)" not in flat
    flat = " ".join(text.split())
    for shown in ("(default: digits)", "(default: adam)", "(default: lenet5)", "(default: last)"):
        assert shown in flat
    group = text.split("\ndata:\n", 1)[1].split("\noptimisation:\n", 1)[0]
    assert "--val-split" in group and "--image-size" in group


def test_dash_o_is_model_option_everywhere_and_option_stays_an_alias(capsys):
    parser = build_parser()
    for command in (["train"], ["summary", "lenet5"]):
        long = parser.parse_args([*command, "--model-option", "modern=true"]).model_option
        alias = parser.parse_args([*command, "--option", "modern=true"]).model_option
        short = parser.parse_args([*command, "-O", "modern=true"]).model_option
        assert long == alias == short and len(short) == 1
    assert main(["summary", "lenet5", "--model-option", "modern=true", "--json"]) == 0
    assert "--option" not in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    assert "--model-option" in capsys.readouterr().out


def test_an_old_run_without_records_or_validation_settings_still_loads(tmp_path, monkeypatch):
    """config.json and the checkpoint as a run from before --val-split wrote them."""
    from cnnlab.runs.load import load_run

    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL, "--epochs", "1", "--name", "old"]) == 0
    run = tmp_path / "runs" / "old"
    old = {k: v for k, v in _settings_of(run).items() if k not in ("val_split", "keep")}
    (run / run_folder.CONFIG).write_text(json.dumps(old))
    state = run_folder.load_checkpoint(run / run_folder.CHECKPOINT)
    state["config"] = {k: v for k, v in state["config"].items() if k not in ("val_split", "keep")}
    torch.save(state, run / run_folder.CHECKPOINT)
    trained = load_run(run)
    assert trained.config.val_split == 0.0 and trained.config.keep == "last"
    assert main(["eval", "old"]) == 0
    assert _settings("--config", str(run / run_folder.CONFIG))["val_split"] == 0.0
    assert main(["train", "--resume", "old", "--epochs", "2", "--no-progress"]) == 0
    assert "versions" in _config(run) and [r["epoch"] for r in _metrics(run)] == [1, 2]


@pytest.mark.parametrize("value", ["null", "'modern'", "[1, 2]"])
def test_model_options_of_a_config_file_must_be_a_mapping(tmp_path, value, capsys):
    settings = tmp_path / "s.yml"
    settings.write_text(f"model_options: {value}\n")
    assert main(["train", "--config", str(settings), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model_options is" in err and "expected a mapping" in err and err.count("\n") == 1
