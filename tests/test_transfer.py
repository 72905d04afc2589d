"""Transfer learning: what each strategy freezes and trains, the advisor, and the command on
real data (a LeNet-5 trained on the digits, moved to MNIST)."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runs.load import load_run
from cnnlab.runs.start import train_run
from cnnlab.train import TrainConfig, make_optimizer
from cnnlab.train.transfer import (
    Strategy,
    advise,
    backbone_blocks,
    check_backbone_lr_factor,
    later_blocks,
    replace_head,
    trainable_groups,
)


def test_strategies_parse_and_explain_errors():
    assert Strategy.parse("fine-tune-last:2") == Strategy("fine-tune-last", 2)
    assert str(Strategy.parse("full")) == "full"
    for bad in ("fine-tune-last:0", "fine-tune-last:x", "freeze"):
        with pytest.raises(CnnlabError, match="feature-extract, fine-tune-last:K"):
            Strategy.parse(bad)


def test_what_each_strategy_trains():
    model = create_model("resnet18_cifar", num_classes=10)
    before = sum(p.numel() for p in model.parameters())
    head = replace_head(model, 5)
    assert model.fc is head and head.out_features == 5
    names = [n for n, _ in backbone_blocks(model)]
    # nn.Sequential stages are opened one level: ResNet's blocks are its BasicBlocks
    assert names == ["conv1", "bn1"] + [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    total = sum(p.numel() for p in model.parameters())
    assert total == before - (512 * 10 + 10) + (512 * 5 + 5)
    groups, report = trainable_groups(model, Strategy("feature-extract"), 1e-3)
    assert report["trainable_params"] == 512 * 5 + 5 and len(groups) == 1
    groups, report = trainable_groups(model, Strategy("fine-tune-last", 1), 1e-3)
    last = sum(p.numel() for p in model.layer4[1].parameters())
    assert report["trainable_params"] == last + 512 * 5 + 5
    assert (
        report["trained_blocks"] == ["layer4.1"] and not model.layer4[0].conv1.weight.requires_grad
    )
    groups, report = trainable_groups(model, Strategy("full"), 1e-3, backbone_lr_factor=0.1)
    assert report["trainable_params"] == total
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    with pytest.raises(CnnlabError, match="the backbone has 10 blocks"):
        trainable_groups(model, Strategy("fine-tune-last", 11), 1e-3)


def test_feature_extraction_keeps_batch_norm_statistics(data_dir):
    from cnnlab.data import load_dataset
    from cnnlab.train import fit

    model = create_model("fashion_cnn", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_head(model, 10)
    data = load_dataset("fashion-mnist", "train", root=data_dir).subset(256, seed=0)
    test = load_dataset("fashion-mnist", "test", root=data_dir).subset(128, seed=0)
    config = TrainConfig(
        model="fashion_cnn",
        dataset="fashion-mnist",
        epochs=1,
        batch_size=64,
        progress=False,
        transfer={"strategy": "feature-extract"},
    )
    fit(model, (data, test), config)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"classifier.6.weight", "classifier.6.bias"}  # running stats included


def test_advisor_four_quadrants():
    assert advise(1000, 10, similar=True)[0] == Strategy("feature-extract")
    assert advise(1000, 10, similar=False)[0] == Strategy("fine-tune-last", 1)
    # large and similar: the course material retrains the later conv layers and the classifier,
    # not the whole network (issue 14, a deliberate change from "full")
    strategy, why = advise(50_000, 10, similar=True)
    assert strategy.kind == "fine-tune-last" and strategy.blocks >= 2
    assert "course material" in why and "later convolutional layers" in why
    strategy, why = advise(50_000, 10, similar=False)
    assert strategy == Strategy("full") and "5,000 per class: large" in why


@pytest.mark.parametrize("name", ["lenet5", "fashion_cnn", "resnet18_cifar", "cifar_plain7"])
def test_large_similar_retrains_the_later_conv_layers_and_the_classifier(name):
    model = create_model(name, num_classes=10)
    blocks = backbone_blocks(model)
    strategy, why = advise(50_000, 10, similar=True, blocks=blocks)
    assert strategy.kind == "fine-tune-last"
    assert 2 <= strategy.blocks < len(blocks)  # never the whole backbone
    first = blocks[-strategy.blocks][0]
    assert f"the last {strategy.blocks} of the backbone's {len(blocks)} blocks, from {first}" in why
    _, report = trainable_groups(model, strategy, 1e-3)  # a K the backbone really has
    assert report["trained_blocks"] == [n for n, _ in blocks][-strategy.blocks :]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not convs[0].weight.requires_grad  # the general early features are kept
    assert convs[-1].weight.requires_grad  # the later conv layers are retrained ...
    assert model.get_submodule(report["head"]).weight.requires_grad  # ... with the classifier
    assert report["trainable_params"] < report["total_params"]
    # the later half of the convolutions (at least one) is retrained, the earlier half kept
    trained = [c.weight.requires_grad for c in convs]
    assert trained == sorted(trained) and len(convs) // 2 <= sum(trained) <= -(-len(convs) // 2)
    # by count alone: the later half of the blocks, the first one always frozen
    assert [later_blocks(n) for n in (1, 2, 3, 4, 10)] == [1, 1, 1, 2, 5]


def test_auto_strategy_help_cites_the_course_material(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "the course material" in help_text
    assert "large and similar -> retrain the later conv layers and the classifier" in help_text


@pytest.fixture(scope="module")
def digits_source(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("transfer-runs")
    config = TrainConfig(
        model="lenet5", dataset="digits", epochs=3, data_dir=str(data_dir), progress=False
    )
    train_run(config, root, "digits")
    return root


@pytest.mark.parametrize("strategy", ["feature-extract", "fine-tune-last:1", "full"])
def test_transfer_freezes_exactly_what_it_says(digits_source, data_dir, strategy, capsys):
    base = ["--runs-dir", str(digits_source), "--data-dir", str(data_dir), "--no-progress"]
    name = strategy.replace(":", "-")
    assert (
        main(
            [
                "transfer",
                "--from",
                "digits",
                "--dataset",
                "mnist",
                "--strategy",
                strategy,
                "--train-subset",
                "600",
                "--test-subset",
                "500",
                "--epochs",
                "2",
                "--name",
                name,
                *base,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test accuracy" in out
    source = load_run(digits_source / "digits").model.state_dict()
    moved = load_run(digits_source / name)
    assert moved.classes == [str(i) for i in range(10)] and moved.input_size == 8
    target = moved.model.state_dict()
    changed = {k for k in source if k in target and not torch.equal(source[k], target[k])}
    head = {"classifier.3.weight", "classifier.3.bias"}
    if strategy == "feature-extract":
        assert changed == head  # every pretrained weight is exactly as it was
    elif strategy == "fine-tune-last:1":
        assert changed == head | {"classifier.1.weight", "classifier.1.bias"}
    else:
        assert "features.0.weight" in changed
    config = moved.config
    assert config.transfer["strategy"] == strategy and config.image_size == 8
    assert main(["eval", name, "--runs-dir", str(digits_source)]) == 0  # converts MNIST again
    optimizer = make_optimizer(moved.model, config)  # a resumed run rebuilds the same groups
    assert len(optimizer.param_groups) == (1 if strategy == "feature-extract" else 2)


def test_transfer_auto_explains_its_choice(digits_source, data_dir, capsys):
    args = [
        "transfer",
        "--from",
        "digits",
        "--dataset",
        "mnist",
        "--train-subset",
        "500",
        "--test-subset",
        "200",
        "--epochs",
        "1",
        "--different",
        "--runs-dir",
        str(digits_source),
        "--data-dir",
        str(data_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "strategy fine-tune-last:1: 500 images, 50 per class: small" in out
    assert (
        main(
            [
                "transfer",
                "--from",
                "nosuchrun",
                "--dataset",
                "mnist",
                "--strategy",
                "full",
                "--runs-dir",
                str(digits_source),
                "--no-progress",
            ]
        )
        == 2
    )


@pytest.mark.parametrize("factor", [-1, float("nan"), float("inf"), 0, 0.0, 1.5, True, "0.1"])
def test_backbone_lr_factor_must_be_a_fraction(factor):
    model = create_model("lenet5", num_classes=10)
    with pytest.raises(CnnlabError, match="expected a finite number with 0 < factor <= 1"):
        trainable_groups(model, Strategy("full"), 1e-3, backbone_lr_factor=factor)
    assert check_backbone_lr_factor(1) == 1.0 and check_backbone_lr_factor(1e-6) == 1e-6


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "value, shown", [("-1", "-1.0"), ("nan", "nan"), ("inf", "inf"), ("0", "0.0"), ("2", "2.0")]
)
@pytest.mark.parametrize("source", ["digits", "nosuchrun"])
def test_transfer_refuses_a_bad_backbone_lr_factor_before_loading(
    value, shown, source, tmp_path, monkeypatch, capsys
):
    import cnnlab.runs.start

    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded before the options were checked")

    monkeypatch.setattr(cnnlab.runs.start, "load_data", must_not_load)
    monkeypatch.setattr(cnnlab.runs.start, "load_pretrained", must_not_load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    before = _tree(tmp_path)
    for strategy in ("auto", "full", "feature-extract"):
        args = [
            "transfer",
            "--from",
            source,
            "--dataset",
            "digits",
            "--strategy",
            strategy,
            "--backbone-lr-factor",
            value,
            "--no-progress",
        ]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"--backbone-lr-factor {shown}: expected a finite number" in err, err
        assert err.count("\n") == 1 and "feature-extract" in err
    assert _tree(tmp_path) == before


def test_transfer_checks_strategy_and_run_folder_before_loading(tmp_path, monkeypatch, capsys):
    import cnnlab.runs.start

    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded before the options were checked")

    monkeypatch.setattr(cnnlab.runs.start, "load_data", must_not_load)
    monkeypatch.setattr(cnnlab.runs.start, "load_pretrained", must_not_load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    before = _tree(tmp_path)
    base = ["transfer", "--from", "digits", "--dataset", "digits", "--no-progress"]
    for extra, message in [
        (["--strategy", "freeze"], "strategy 'freeze': expected"),
        (["--name", "n" * 300], "300 bytes long"),
        (["--runs-dir", "a-file/runs"], "is a file, not a folder"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert _tree(tmp_path) == before


def test_backbone_lr_factor_is_noted_where_it_does_not_apply(digits_source, data_dir, capsys):
    args = [
        "transfer",
        "--from",
        "digits",
        "--dataset",
        "mnist",
        "--strategy",
        "feature-extract",
        "--backbone-lr-factor",
        "0.5",
        "--train-subset",
        "300",
        "--test-subset",
        "100",
        "--epochs",
        "1",
        "--name",
        "noted",
        "--runs-dir",
        str(digits_source),
        "--data-dir",
        str(data_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "--backbone-lr-factor applies to --strategy full only" in capsys.readouterr().out


def test_transfer_takes_device_amp_and_augment_and_records_them(digits_source, data_dir):
    base = ["transfer", "--from", "digits", "--dataset", "mnist", "--strategy", "full"]
    where = ["--runs-dir", str(digits_source), "--data-dir", str(data_dir), "--no-progress"]
    sizes = ["--train-subset", "256", "--test-subset", "100", "--epochs", "1"]
    extra = ["--device", "cpu", "--amp", "bf16", "--augment", "--name", "flags"]
    assert main([*base, *where, *sizes, *extra]) == 0
    saved = json.loads((digits_source / "flags" / "config.json").read_text())
    assert (saved["device"], saved["amp"], saved["augment"]) == ("cpu", "bf16", True)
    # a bad value is the training command's one-line error, before anything is loaded
    assert main([*base, *where, *sizes, "--device", "tpu", "--name", "bad"]) == 2
    assert not (digits_source / "bad").exists()


def test_a_declared_head_is_the_one_replaced():
    """A model may name its classifier output layer (``cnnlab_head``): transfer learning
    replaces that one, not merely the last ``nn.Linear`` it registered."""
    from torch import nn

    from cnnlab.train.transfer import head_path, replace_head

    class TwoHeads(nn.Module):
        cnnlab_head = "main"

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(1, 4, 3)
            self.main = nn.Linear(4, 10)
            self.probe = nn.Linear(4, 2)  # registered last, not the classifier

    model = TwoHeads()
    assert head_path(model) == "main"
    replace_head(model, 3)
    assert model.main.out_features == 3 and model.probe.out_features == 2
    del TwoHeads.cnnlab_head
    assert head_path(TwoHeads()) == "probe"  # undeclared: the last nn.Linear
