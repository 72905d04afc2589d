"""Each training option is declared once, as a TrainConfig field (default, check, flag, help),
and ``cnnlab train``'s parser is generated from the fields: every flag reaches its field,
every refused value names its flag. Adding an option is one field in train/config.py plus
its two rows below (a value the flag must carry, a value the check must refuse)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.cli.train import train_settings
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig

# for every field with a flag: the words typed, the extra words a valid run also needs, and
# the value the field must then hold
TYPED = {
    "model": (["--model", "alexnet"], [], "alexnet"),
    "model_options": (["-O", "modern=true", "-O", "width=2"], [], {"modern": True, "width": 2}),
    "init": (["--init", "keras"], [], "keras"),
    "dataset": (["--dataset", "cifar10"], [], "cifar10"),
    "data_dir": (["--data-dir", "/some/where"], [], "/some/where"),
    "data_variant": (["--data-variant", "jpeg"], [], "jpeg"),
    "image_channels": (["--image-channels", "3"], [], 3),
    "image_size": (["--image-size", "24"], [], 24),
    "stream": (["--stream"], ["--dataset", "imagefolder"], True),
    "train_subset": (["--train-subset", "500"], [], 500),
    "test_subset": (["--test-subset", "70"], [], 70),
    "val_split": (["--val-split", "0.25"], [], 0.25),
    "classes": (["--classes", "cat, dog,"], [], ["cat", "dog"]),
    "augment": (["--augment"], [], True),
    "augment_style": (["--augment-style", "alexnet"], [], "alexnet"),
    "input_scaling": (["--input-scaling", "unit"], [], "unit"),
    "shuffle": (["--no-shuffle"], [], False),
    "test_flip": (["--test-flip"], [], True),
    "test_translate": (["--test-translate", "2"], [], 2),
    "small_size": (["--small-size", "24"], ["--small-epochs", "2"], 24),
    "small_epochs": (["--small-epochs", "2"], [], 2),
    "epochs": (["--epochs", "7"], [], 7),
    "batch_size": (["--batch-size", "48"], [], 48),
    "optimizer": (["--optimizer", "sgd"], [], "sgd"),
    "lr": (["--lr", "0.05"], [], 0.05),
    "momentum": (["--momentum", "0.5"], [], 0.5),
    "nesterov": (["--nesterov"], ["--optimizer", "sgd"], True),
    "weight_decay": (["--weight-decay", "5e-4"], [], 5e-4),
    "adam_eps": (["--adam-eps", "1e-7"], [], 1e-7),
    "label_smoothing": (["--label-smoothing", "0.1"], [], 0.1),
    "lookahead": (["--lookahead"], [], True),
    "ema": (["--ema", "0.99"], [], 0.99),
    "seed": (["--seed", "9"], [], 9),
    "schedule": (["--schedule", "step"], [], "step"),
    "warmup_epochs": (["--warmup-epochs", "1.5"], [], 1.5),
    "step_epochs": (["--step-epochs", "3"], [], 3),
    "step_gamma": (["--step-gamma", "0.5"], [], 0.5),
    "keep": (["--keep", "best"], ["--val-split", "0.1"], "best"),
    "eval_every": (["--eval-every", "20"], [], 20),
    "tensorboard": (["--tensorboard"], [], True),
    "progress": (["--no-progress"], [], False),
    "device": (["--device", "cpu"], [], "cpu"),
    "amp": (["--amp", "bf16"], [], "bf16"),
    "channels_last": (["--channels-last"], [], True),
    "probe": (["--probe"], [], True),
}
# for every field with a check: a value it must refuse, with the flag its error names
REFUSED = {
    "model_options": (["x"], "-O"),
    "init": ("glorot", "--init"),
    "image_channels": (2, "--image-channels"),
    "image_size": (0, "--image-size"),
    "stream": (True, "--stream"),  # on digits
    "train_subset": (0, "--train-subset"),
    "test_subset": (-1, "--test-subset"),
    "val_split": (1.0, "--val-split"),
    "classes": (["cat"], "--classes"),
    "augment_style": ("cutout", "--augment-style"),
    "input_scaling": ("zscore", "--input-scaling"),
    "shuffle": ("yes", "--shuffle"),
    "test_flip": (1, "--test-flip"),
    "test_translate": (5, "--test-translate"),
    "small_size": (3, "--small-size"),
    "small_epochs": (30, "--small-epochs"),  # the last epoch must train at full size
    "epochs": (0, "--epochs"),
    "batch_size": (2.5, "--batch-size"),
    "optimizer": ("rmsprop", "--optimizer"),
    "lr": (float("inf"), "--lr"),
    "momentum": (1.0, "--momentum"),
    "nesterov": (True, "--nesterov"),  # with adam
    "weight_decay": (-0.1, "--weight-decay"),
    "adam_eps": (0.0, "--adam-eps"),
    "label_smoothing": (1.0, "--label-smoothing"),
    "lookahead": ("on", "--lookahead"),
    "ema": (1.0, "--ema"),
    "seed": (2**32, "--seed"),
    "schedule": ("exp", "--schedule"),
    "warmup_epochs": (31, "--warmup-epochs"),  # beyond the 30 epochs
    "step_epochs": (0, "--step-epochs"),
    "step_gamma": (0.0, "--step-gamma"),
    "keep": ("best", "--keep"),  # without a validation split
    "eval_every": (0, "--eval-every"),
    "tensorboard": ("no", "--tensorboard"),
    "device": ("tpu", "device 'tpu'"),
    "amp": ("fp8", "--amp"),
    "probe": (None, "--probe"),
    "eval_batch_size": (0, "a --config file or TrainConfig key; no flag"),
}


def _flagged() -> list[str]:
    return [f.name for f in fields(TrainConfig) if f.metadata.get("group")]


def _checked() -> list[str]:
    return [f.name for f in fields(TrainConfig) if f.metadata.get("check")]


def test_every_flagged_field_and_every_check_has_its_rows_here():
    assert sorted(TYPED) == sorted(_flagged())
    assert sorted(REFUSED) == sorted(_checked())


@pytest.mark.parametrize("name", sorted(TYPED))
def test_a_typed_flag_reaches_its_field_over_the_default(name):
    words, needs, value = TYPED[name]
    assert getattr(TrainConfig(), name) != value, "pick a value other than the default"
    args = build_parser().parse_args(["train", *needs, *words])
    config = TrainConfig(**train_settings(args, args.given))
    assert getattr(config, name) == value
    untyped = build_parser().parse_args(["train", *needs])
    assert getattr(TrainConfig(**train_settings(untyped, untyped.given)), name) != value


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_value_names_its_field_and_flag(name):
    value, flag = REFUSED[name]
    with pytest.raises(CnnlabError) as err:
        TrainConfig(**{name: value})
    message = str(err.value)
    assert flag in message and "expected" in message
    assert "\n" not in message


def test_the_help_shows_every_flag_in_its_group_with_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for spec in fields(TrainConfig):
        meta = spec.metadata
        if not meta.get("group"):
            assert f"--{spec.name.replace('_', '-')}" not in text
            continue
        flag = meta["flag"] or f"--{spec.name.replace('_', '-')}"
        section = text.split(f"\n{meta['group']}:\n")[1].split("\n\n")[0]
        assert flag in section, (spec.name, meta["group"])
    assert "--no-progress         hide the progress bar (default: off)" in text
    assert "--augment, --no-augment" in text


def test_a_switch_whose_flag_could_never_change_its_field_is_refused_at_declaration():
    from cnnlab.train.options import option

    with pytest.raises(ValueError, match="needs the default False"):
        option(True, switch="on", help="--x sets true, but it is already true")
    with pytest.raises(ValueError, match="needs the default True"):
        option(False, switch="off", help="--no-x sets false, but it is already false")
    assert option(False, switch="on").metadata["switch"] == "on"
