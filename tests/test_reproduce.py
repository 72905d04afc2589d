"""`cnnlab reproduce`: the course's experiments with the course's recipes, real trainings, and
a report (Markdown, JSON, one PNG each) next to the material's logged figures."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.course.report import epoch_table, markdown, measured_lines, merge_rows
from cnnlab.course.reproduce import EXPERIMENTS, KEYS, config_for
from cnnlab.models import create_model


def test_reproduce_quick_writes_the_report(tmp_path, data_dir, capsys):
    out = tmp_path / "table.md"
    args = [
        "reproduce",
        "--quick",
        "--only",
        "e7-fashion-dnn",
        "--runs-dir",
        str(tmp_path),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = out.read_text()
    assert "| E7 Fashion-MNIST DNN" in text and "about 86% test accuracy" in text
    row = [line for line in text.splitlines() if line.startswith("| E7")][0]
    accuracy = float(row.split("|")[3].strip().rstrip("%")) / 100
    assert 0.55 < accuracy < 0.95  # 50 steps on 5,000 real images (chance: 10%)
    report = json.loads(out.with_suffix(".json").read_text())[0]
    assert report["settings"]["shuffle"] is False and report["settings"]["batch_size"] == 100
    made = report["provenance"]  # when, from which commit, on what
    assert {"date", "commit", "cpu_model", "cpu_flags", "cpu_count", "torch"} <= set(made)
    assert made["cpu_vector"] in ("avx512f", "avx2", "neither")
    # test accuracy every 50 iterations, as the material measures it: 5,000 / 100 = 50 steps
    assert [s["step"] for s in report["steps"]] == [50]
    assert (tmp_path / "table-e7-fashion-dnn.png").stat().st_size > 10_000
    assert main(args) == 0  # a second run gets its own folder, nothing is overwritten
    assert len(list((tmp_path / "reproduce").iterdir())) == 2
    # --resume reads the newest run of the same recipe instead of training a third
    newest = max((tmp_path / "reproduce").iterdir(), key=lambda p: p.stat().st_mtime)
    assert main([*args, "--resume"]) == 0
    assert len(list((tmp_path / "reproduce").iterdir())) == 2
    again = json.loads(out.with_suffix(".json").read_text())[0]
    assert again["how"] == "read from a finished run" and again["run"] == str(newest)
    assert [s["step"] for s in again["steps"]] == [50]
    assert again["cnnlab_acc"] == float((newest / "metrics.csv").read_text().split(",")[-3])
    assert main(["reproduce", "--only", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "experiments are e1-lenet5-mnist" in capsys.readouterr().err


def test_the_recipes_are_the_materials():
    by_key = {e.key: e for e in EXPERIMENTS}
    for key in ("e4-cifar-plain7", "e5-cifar-residual", "e6-cifar-residual-pool"):
        config = config_for(by_key[key], quick=False, data_dir=None, progress=False)
        assert (config.optimizer, config.lr, config.schedule, config.batch_size) == (
            "adam",
            1e-3,
            "none",
            32,
        )
        assert (config.epochs, config.input_scaling, config.augment) == (5, "unit", False)
        assert config.data_variant == "jpeg" and config.shuffle
        assert len(by_key[key].logged) == 5
    for key in ("e7-fashion-dnn", "e8-fashion-cnn"):
        config = config_for(by_key[key], quick=False, data_dir=None, progress=False)
        assert (config.batch_size, config.epochs, config.shuffle, config.eval_every) == (
            100,
            5,
            False,
            50,
        )
        assert config.input_scaling == "unit" and config.schedule == "none"
    # E8 is the course's FashionCNN: no activation between its three fully connected layers
    e8 = config_for(by_key["e8-fashion-cnn"], quick=False, data_dir=None, progress=False)
    head = create_model(e8.model, **e8.model_options).classifier
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Flatten", "Linear", "Dropout", "Linear", "Linear"]
    lenet = config_for(by_key["e1-lenet5-mnist"], quick=False, data_dir=None, progress=False)
    model = create_model(lenet.model, **lenet.model_options)
    assert not lenet.model_options.get("modern") and lenet.model_options["c3_table"]
    assert sum(p.numel() for p in model.parameters()) == 60_806  # the paper's C3 table


def test_the_table_shows_the_materials_log_beside_ours():
    e4 = next(e for e in EXPERIMENTS if e.key == "e4-cifar-plain7")
    row = {
        "key": e4.key,
        "what": e4.what,
        "reference": e4.reference,
        "reference_acc": 0.7165,
        "cnnlab_acc": 0.7,
        "difference": -0.0165,
        "seconds": 1.0,
        "data": "CIFAR-10",
        "epochs": [
            {"epoch": 1, "train_loss": 1.6, "train_acc": 0.41, "test_loss": 1.2, "test_acc": 0.55}
        ],
        "logged": e4.logged,
        "note": "",
    }
    table = markdown([row], quick=False)
    assert "71.65% test accuracy" in table and "-1.65 points" in table
    assert "| 1 | 1.5299 / 43.53% | 1.6000 / 41.00% |" in table


def test_e2_relu_vs_tanh_quick(tmp_path, data_dir):
    """E2 on real CIFAR-10 images: a rate sweep per unit, then epochs until 25% training
    error (not reached in --quick's 2 epochs on 1,000 images), a table and a figure."""
    out = tmp_path / "e2.md"
    args = ["reproduce", "--quick", "--only", "e2-relu-vs-tanh", "--runs-dir", str(tmp_path)]
    assert main([*args, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())[0]
    for activation in ("relu", "tanh"):
        curve = row["curves"][activation]
        assert curve["lr"] in (0.01, 0.03) and set(curve["sweep"]) == {"0.01", "0.03"}
        assert len(curve["train_error"]) == 2  # --quick stops at 2 epochs
        assert all(0 < e < 0.9 for e in curve["train_error"])  # learned something (chance 90%)
    assert row["config"]["model"] == "cifar_four" and row["config"]["optimizer"] == "sgd"
    assert row["config"]["init"] == "torch"
    text = out.read_text()
    assert "| E2 ReLU vs tanh" in text and "| 2 |" in text
    assert (tmp_path / "e2-e2-relu-vs-tanh.png").stat().st_size > 10_000


def test_epochs_to_target_interpolates():
    from cnnlab.course.e2 import epochs_to

    assert epochs_to([0.5, 0.3, 0.2]) == pytest.approx(2.5)  # 0.3 -> 0.2 crosses 0.25 halfway
    assert epochs_to([0.2]) == pytest.approx(0.65 / 0.7)  # from chance (0.9) at epoch 0
    assert epochs_to([0.5, 0.4]) is None


def test_cifar_four_is_the_figure_one_network():
    relu = create_model("cifar_four", activation="relu")
    tanh = create_model("cifar_four", activation="tanh")
    # conv 3->32 5x5, 32->32 5x5, 32->64 5x5 (+ biases), dense 64*4*4 -> 10
    expected = (75 * 32 + 32) + (800 * 32 + 32) + (800 * 64 + 64) + (1024 * 10 + 10)
    for model in (relu, tanh):
        assert sum(p.numel() for p in model.parameters()) == expected == 89_578
    kinds = {type(m).__name__ for m in tanh.modules()}
    assert "Tanh" in kinds and "ReLU" not in kinds


def test_the_course_keras_code_runs_on_cnnlabs_images_and_is_kept(tmp_path, data_dir, monkeypatch):
    """The middle column: the course's Keras code for E6 trained on the very images cnnlab's
    config names, its log kept as JSON and reused, and the table reads three columns."""
    from cnnlab.course import keras_code

    keras_code.keras_module()  # an optional extra, installed with .[dev]: no skip
    from cnnlab.train import TrainConfig

    config = TrainConfig(
        model="cifar_residual_pool",
        dataset="cifar10",
        data_variant="subset",
        data_dir=str(data_dir),
        train_subset=64,
        test_subset=32,
        epochs=1,
        progress=False,
    )
    result = keras_code.run_course_code("e6-cifar-residual-pool", config, tmp_path)
    assert result["parameters"] == 1_316_746  # the course's network, as cnnlab's
    assert (result["train_images"], result["test_images"], len(result["epochs"])) == (64, 32, 1)
    assert 0.0 <= result["epochs"][0]["test_acc"] <= 1.0
    assert result["epochs"][0]["train_loss"] > 0

    def no_keras():
        raise AssertionError("a kept result must not train again")

    # a killed run goes on from its last epoch: asking for 2 epochs trains only the second
    config.epochs = 2
    longer = keras_code.run_course_code("e6-cifar-residual-pool", config, tmp_path)
    assert longer["epochs"][0] == result["epochs"][0] and len(longer["epochs"]) == 2
    assert longer["resumed_after"] == [1]
    monkeypatch.setattr(keras_code, "keras_module", no_keras)
    kept = keras_code.run_course_code("e6-cifar-residual-pool", config, tmp_path)
    assert kept == longer
    config.epochs = 1
    e6 = next(e for e in EXPERIMENTS if e.key == "e6-cifar-residual-pool")
    ours = {"epoch": 1, "train_loss": 1.5, "train_acc": 0.4, "test_loss": 1.4, "test_acc": 0.45}
    row = {"what": e6.what, "reference_acc": e6.reference_value, "epochs": [ours]}
    row.update(logged=e6.logged, logged_test=e6.logged_test, course_code=result)
    lines = epoch_table(row)
    assert "| epoch | the material | the course's code here | cnnlab |" in lines
    theirs = result["epochs"][0]
    assert any(
        line.startswith(f"| 1 | 1.3663 / 50.45% | {theirs['train_loss']:.4f} / ") for line in lines
    )
    assert any("the same 64 training images" in line for line in lines)


def test_without_keras_the_column_says_how_to_get_it(tmp_path, monkeypatch):
    from cnnlab.course import keras_code
    from cnnlab.course.reproduce import course_code_column
    from cnnlab.errors import CnnlabError

    def missing():
        raise CnnlabError(f"the course's Keras code needs Keras: {keras_code.HOW_TO_GET}")

    monkeypatch.setattr(keras_code, "keras_module", missing)
    config = config_for(EXPERIMENTS[1], quick=True, data_dir=None, progress=False)
    column = course_code_column("e4-cifar-plain7", config, tmp_path, True, False)
    assert "pip install 'cnnlab[keras]'" in column["missing"]
    assert (
        "--keras"
        in course_code_column("e4-cifar-plain7", config, tmp_path, False, False)["missing"]
    )
    row = {"what": "E4", "reference_acc": 0.7165, "logged": EXPERIMENTS[1].logged}
    row["epochs"] = [
        {"epoch": 1, "train_loss": 1, "train_acc": 0.5, "test_loss": 1, "test_acc": 0.5}
    ]
    row["course_code"] = column
    assert any("pip install 'cnnlab[keras]'" in line for line in epoch_table(row))


def test_e2_paper_init_trains_both_units_from_normal_001(tmp_path, monkeypatch):
    """The paper-era E2 row: every training it starts (sweep and runs, ReLU and tanh) draws its
    weights from N(0, 0.01^2) with zero biases; the default row keeps PyTorch's."""
    from types import SimpleNamespace

    from cnnlab.course import e2

    seen = []

    def fake_train(config, root):
        seen.append(config)
        error = 0.2 if config.model_options["activation"] == "relu" else 0.5
        history = [{"train_acc": 1 - error, "test_acc": 0.5}]
        return SimpleNamespace(history=history, run_dir=root / "x")

    monkeypatch.setattr(e2, "train_run", fake_train)
    monkeypatch.setattr(
        e2,
        "resume_run",
        lambda run, epochs: SimpleNamespace(history=[{"train_acc": 0.8, "test_acc": 0.5}] * epochs),
    )
    row = e2.run_e2(True, tmp_path, key=e2.KEY_PAPER_INIT)
    assert seen and {c.init for c in seen} == {"normal-0.01"}
    assert {c.model_options["activation"] for c in seen} == {"relu", "tanh"}
    assert row["key"] == "e2-relu-vs-tanh-paper-init" and "N(0, 0.01)" in row["what"]
    assert row["config"]["init"] == "normal-0.01"
    seen.clear()
    e2.run_e2(True, tmp_path)
    assert {c.init for c in seen} == {"torch"}


def test_e1_pads_each_digit_with_its_own_background(data_dir):
    """LeNet-5's 32x32 field around a normalised 28x28 MNIST digit is the digit's background
    level (about -0.42), not a frame of zeros brighter than it; the NumPy twin pads alike."""
    import numpy as np
    import torch

    from cnnlab.data import load_dataset
    from cnnlab.scratch import from_torch

    e1 = next(e for e in EXPERIMENTS if e.key == "e1-lenet5-mnist")
    config = config_for(e1, quick=False, data_dir=None, progress=False)
    assert config.model_options["pad"] == "background"
    model = create_model("lenet5", input_size=28, **config.model_options)
    digits = load_dataset("mnist", "test", root=data_dir).images[:8].float() / 255
    normalised = (digits - 0.1307) / 0.3081
    field = model.fit(normalised)
    frame = torch.cat([field[..., :2, :].flatten(1), field[..., -2:, :].flatten(1)], 1)
    assert torch.allclose(frame, torch.full_like(frame, -0.1307 / 0.3081), atol=1e-6)
    assert torch.equal(field[..., 2:30, 2:30], normalised)
    zero = create_model("lenet5", input_size=28).fit(normalised)  # the default: zeros
    assert float(zero[..., 0, 0].abs().max()) == 0.0
    plain = create_model("lenet5", input_size=28, pad="background").double()
    twin = from_torch(plain)
    x = normalised.double()
    assert np.abs(twin.forward(x.numpy()) - plain(x).detach().numpy()).max() < 1e-10
    with pytest.raises(Exception, match="pad='edge': expected one of zero, background"):
        create_model("lenet5", pad="edge")


def test_a_kept_run_matches_its_recipe_even_from_before_a_setting_existed(tmp_path):
    """--resume finds the newest run of the same recipe; a setting added to TrainConfig after
    the run was made (absent from its config.json) counts as its default, any other difference
    as another recipe."""
    from dataclasses import asdict

    from cnnlab.course.reproduce import kept_run

    e6 = next(e for e in EXPERIMENTS if e.key == "e6-cifar-residual-pool")
    config = config_for(e6, quick=False, data_dir="/somewhere", progress=True)
    folder = tmp_path / "reproduce" / "cifar_residual_pool-cifar10"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"x")
    saved = {k: v for k, v in json.loads(json.dumps(asdict(config))).items() if k != "probe"}
    saved.update(data_dir="/elsewhere", progress=False)  # where and how it was watched
    (folder / "config.json").write_text(json.dumps(saved))
    assert kept_run(tmp_path, config) == folder
    saved["lr"] = 0.01
    (folder / "config.json").write_text(json.dumps(saved))
    assert kept_run(tmp_path, config) is None


def test_the_report_counts_dead_relus_in_both_networks(tmp_path, data_dir, monkeypatch):
    """After E6 trains in cnnlab and as the course's Keras code, the report counts each
    network's ReLU units that ended dead, layer by layer, measured on the same test images."""
    from cnnlab.course import keras_code, reproduce
    from cnnlab.inspect import dead_relus
    from cnnlab.runs.load import load_run
    from cnnlab.train.pipeline import load_data

    keras_code.keras_module()  # an optional extra, installed with .[dev]: no skip
    e6 = next(e for e in EXPERIMENTS if e.key == "e6-cifar-residual-pool")
    monkeypatch.setitem(e6.quick, "test_subset", 100)  # fewer probe images than the 256
    (row,) = reproduce.run(
        True, tmp_path, str(data_dir), ["e6-cifar-residual-pool"], say=lambda *a: None,
        train_subset=64, keras=True,
    )  # fmt: skip
    dead = row["dead_relus"]
    assert dead["images"] == 100  # all the test images there are, when under 256
    assert len(dead["cnnlab"]) == len(dead["course_code"]) == 8  # E6's eight ReLU convolutions
    assert all(name.startswith("conv2d") for name in dead["course_code"])  # Keras' Conv2D
    test = load_data(config_for(e6, True, str(data_dir), False, 64))[1]  # the run's test images
    trained = load_run(row["run"], tmp_path)
    again = dead_relus(trained.model, trained.preprocess(torch.as_tensor(test.images[:256])))
    assert dead["cnnlab"] == again
    lines = epoch_table(row)
    assert any(
        line.startswith("| ReLU layer | the course's code here | cnnlab |") for line in lines
    )
    name, share = next(iter(dead["course_code"].items()))
    first = f"| 1: {name} / features.0.1 | {share:.0%} | {dead['cnnlab']['features.0.1']:.0%} |"
    assert first in lines
    assert any(line.startswith("| mean over the layers | ") for line in lines)


def test_a_layer_dead_to_the_last_unit_is_named_with_what_it_means():
    e4 = next(e for e in EXPERIMENTS if e.key == "e4-cifar-plain7")
    ours = {"epoch": 1, "train_loss": 2.3025, "train_acc": 0.1, "test_loss": 2.3, "test_acc": 0.1}
    row = {"what": e4.what, "reference_acc": 0.7165, "epochs": [ours], "logged": e4.logged}
    row["dead_relus"] = {
        "images": 256,
        "cnnlab": {"features.0.1": 0.04, "features.6.1": 1.0, "classifier.2": 1.0},
        "course_code": {"conv2d": 0.39, "conv2d_6": 0.57, "dense": 0.73},
    }
    text = "\n".join(epoch_table(row))
    assert "| 2: conv2d_6 / features.6.1 | 57% | 100% |" in text
    assert "| mean over the layers | 56% | 68% |" in text
    assert "every unit of ReLU layers 2 (features.6.1), 3 (classifier.2) dead: no gradient" in text
    assert "passes below them" in text
    assert "The course's code run here ended" not in text
    row["dead_relus"]["cnnlab"]["features.6.1"] = 0.99
    row["dead_relus"]["cnnlab"]["classifier.2"] = 0.5
    assert "ended with every unit" not in "\n".join(epoch_table(row))
    # inside a residual branch the skip connection still carries signal and gradient
    row["dead_relus"]["cnnlab"] = {"features.0.1": 0.1, "features.2.body.1.1": 1.0}
    row["dead_relus"]["course_code"] = {"conv2d": 0.1, "conv2d_3": 1.0}
    text = "\n".join(epoch_table(row))
    assert "cnnlab's run ended with every unit of ReLU layer 2 (features.2.body.1.1) dead, " in text
    assert "The course's code run here ended with every unit of ReLU layer 2 (conv2d_3)" in text
    assert "skip connection around it still carries" in text and "ln 10" not in text
    # columns that cannot be paired, and a Keras model that could not be read, say so
    row["dead_relus"]["course_code"] = {"conv2d": 0.1}
    row["dead_relus"]["course_code_missing"] = "its kept model x.keras could not be read: gone"
    text = "\n".join(epoch_table(row))
    assert "The course's code has 1 ReLU layers, cnnlab 2: not paired." in text
    assert "could not be read: gone" in text and "| ReLU layer | cnnlab |" in text


def test_merge_grows_a_report_one_experiment_at_a_time(tmp_path, data_dir, capsys):
    """--merge keeps the rows already in --out's JSON for the experiments this call does not
    run, each with the provenance it was measured with, and refuses rows of another kind."""
    out = tmp_path / "table.md"
    args = ["reproduce", "--quick", "--only", "e7-fashion-dnn", "--runs-dir", str(tmp_path)]
    args += ["--data-dir", str(data_dir), "--out", str(out)]
    assert main(args) == 0
    first = json.loads(out.with_suffix(".json").read_text())
    assert first[0]["quick"] is True and "Measured 20" in out.read_text()
    # a row measured elsewhere, earlier (E1 is the report's first experiment)
    elsewhere = {**first[0], "key": "e1-lenet5-mnist", "what": "E1 kept"}
    elsewhere["provenance"] = {**first[0]["provenance"], "commit": "0ld0ld0", "cpu_model": "Zen"}
    out.with_suffix(".json").write_text(json.dumps([first[0], elsewhere]))
    assert main([*args, "--resume", "--merge"]) == 0
    merged = json.loads(out.with_suffix(".json").read_text())
    assert [r["key"] for r in merged] == ["e1-lenet5-mnist", "e7-fashion-dnn"]
    assert merged[0] == elsewhere  # kept as it was, provenance included
    assert merged[1]["provenance"]["commit"] != "0ld0ld0"
    text = out.read_text()
    assert "| E1 kept |" in text and "| E7 Fashion-MNIST DNN" in text
    assert "- e1-lenet5-mnist: " in text and "commit 0ld0ld0, Zen" in text
    assert (tmp_path / "table-e1-lenet5-mnist.png").stat().st_size > 10_000
    # without --merge the report holds this call's experiments only
    assert main([*args, "--resume"]) == 0
    assert [r["key"] for r in json.loads(out.with_suffix(".json").read_text())] == [
        "e7-fashion-dnn"
    ]
    # another kind of run (full recipe, or another subset) is refused before any training
    capsys.readouterr()
    full = [a for a in args if a != "--quick"]
    assert main([*full, "--merge"]) == 2
    err = capsys.readouterr().err
    assert "holds e7-fashion-dnn trained with --quick" in err and "the full recipe" in err
    assert main([*args, "--merge", "--train-subset", "500"]) == 2
    assert "on 500 images" in capsys.readouterr().err
    broken = {k: v for k, v in elsewhere.items() if k != "steps"}  # a row missing its log
    for text in ('{"not": "a list"}', "[1, 2]", "[{", json.dumps([broken])):
        out.with_suffix(".json").write_text(text)
        assert main([*args, "--merge"]) == 2, text
        err = capsys.readouterr().err
        assert "is not a cnnlab reproduce report" in err and "Drop --merge" in err
    assert len(list((tmp_path / "reproduce").iterdir())) == 1  # nothing trained again


def test_rows_measured_alike_say_so_once():
    made = {"date": "2026-12-07T10:00:00+00:00", "commit": "abc1234", "cpu_model": "AMD EPYC"}
    made |= {"torch_threads": 2, "torch": "2.14.1", "cpu_vector": "avx2"}
    rows = [{"key": k, "provenance": made} for k in ("e4-cifar-plain7", "e6-cifar-residual-pool")]
    assert measured_lines(rows) == [
        "",
        "Measured 2026-12-07, commit abc1234, AMD EPYC, AVX2 (2 threads), torch 2.14.1.",
    ]
    rows[1] = {**rows[1], "provenance": {**made, "commit": "def5678"}}
    assert measured_lines(rows)[1:3] == ["Measured:", ""]
    merged = merge_rows([{"key": "gone"}, *rows[:1]], [{"key": "e1-lenet5-mnist"}], KEYS)
    assert [r["key"] for r in merged] == ["e1-lenet5-mnist", "e4-cifar-plain7", "gone"]
