"""One meaning for a SOURCE and an IMAGE in every command: a run folder wins a model name of
the same spelling (with a note naming both), and ``test:N``, ``DATASET:N`` and files work
wherever an image is read."""

from __future__ import annotations

import json
import shutil

import pytest

from cnnlab.cli import main
from cnnlab.cli.serve import serve_sources
from cnnlab.runs.sources import find_run, load_source, resolve_model_or_run, which


@pytest.fixture(scope="module")
def lenet5_named_run(runs_root, tmp_path_factory):
    """A trained LeNet-5 run in a folder called ``lenet5``: the registered model's name."""
    root = tmp_path_factory.mktemp("named")
    shutil.copytree(runs_root / "lenet", root / "lenet5")
    return root


def test_a_run_folder_wins_its_model_name_everywhere_and_says_so(lenet5_named_run):
    root = lenet5_named_run
    meant = which("lenet5", root)
    assert meant.is_run and meant.run == root / "lenet5"
    assert "both the run folder" in meant.note and "lenet5" in meant.note
    source = load_source("lenet5", root)
    assert source.run is not None and any("both the run folder" in n for n in source.notes)
    _, label, *_ = resolve_model_or_run("lenet5", runs_root=root)
    assert str(root / "lenet5") in label and "note:" in label
    assert serve_sources(["lenet5"], root) == [root / "lenet5"]
    # without the folder the same text is the untrained registered model
    elsewhere = root / "empty"
    elsewhere.mkdir(exist_ok=True)
    assert not which("lenet5", elsewhere).is_run and which("lenet5", elsewhere).note is None
    assert load_source("lenet5", elsewhere).run is None
    assert serve_sources(["lenet5"], elsewhere) == ["lenet5"]
    assert find_run(str(root / "lenet5")) == root / "lenet5"


def test_predict_show_and_trace_mean_the_same_trained_model(
    lenet5_named_run, data_dir, capsys, tmp_path
):
    common = ["--runs-dir", str(lenet5_named_run)]
    data = ["--data-dir", str(data_dir)]
    assert main(["predict", "lenet5", "test:0", "--json", *common, *data]) == 0
    out = capsys.readouterr()
    predicted = json.loads(out.out)[0]
    # test:N exists only for a run (the untrained model has no test set), and it is trained
    assert predicted["true"] in [str(d) for d in range(10)]
    assert "both the run folder" in out.err
    assert predicted["top"][0]["probability"] > 0.5
    assert main(["trace", "lenet5", "test:0", *common, *data]) == 0
    traced = capsys.readouterr().out
    assert "run lenet5 (lenet5)" in traced and "both the run folder" in traced
    out_png = tmp_path / "maps.png"
    args = ["show", "featuremaps", "lenet5", "test:0", "--out", str(out_png), *common, *data]
    assert main(args) == 0
    assert "both the run folder" in capsys.readouterr().out and out_png.stat().st_size > 0


def test_every_image_form_works_in_predict(runs_root, data_dir, capsys):
    run = str(runs_root / "lenet")
    photo = str(data_dir / "photos" / "coins.png")
    args = ["predict", run, "test:0", "mnist:1", photo, "--json", "--data-dir", str(data_dir)]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == ["test:0", "mnist:1", photo]
    assert results[1]["true"] == "2" and results[1]["label"].startswith("mnist test image 1")
    assert results[2]["true"] is None and results[2]["notes"]  # a photo: converted, no label
    assert main(["predict", run, "mnist:99999", "--data-dir", str(data_dir)]) == 2
    assert "the mnist test split has images 0..9999" in capsys.readouterr().err
    assert main(["predict", run, "test:x", "--data-dir", str(data_dir)]) == 2
    assert "expected test:N with a number N" in capsys.readouterr().err
