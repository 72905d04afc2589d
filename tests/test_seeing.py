"""The course's "seeing" lessons: activation functions and their autograd derivatives, pixel
values, pooling of a real photo, data samples, the images that excite a channel most,
robustness, translation equivariance and learned against classic filters, each on real data
and through its `cnnlab show` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.inspect.activations import activation_curves
from cnnlab.inspect.filter_match import match_filters, normalized_correlation, resized_kernel
from cnnlab.inspect.image_filters import kernel
from cnnlab.inspect.pictures import load_picture, pooling_views
from cnnlab.inspect.probes import (
    DEFAULT_LEVELS,
    perturb,
    robustness,
    shift_image,
    top_activations,
    translation,
)
from cnnlab.inspect.views import feature_maps


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    return load_dataset("mnist", "test", root=data_dir)


# ------------------------------------------------------------------------------ activations


def test_activation_derivatives_are_autograds_and_match_the_formulas():
    curves = {c.name: c for c in activation_curves()}
    sigmoid = curves["sigmoid"]
    s = torch.sigmoid(sigmoid.x)
    assert torch.allclose(sigmoid.derivative, s * (1 - s))
    assert sigmoid.max_derivative == pytest.approx(0.25) and abs(sigmoid.x_of_max_derivative) < 1e-9
    t = curves["tanh"]
    assert torch.allclose(t.derivative, 1 - torch.tanh(t.x) ** 2)
    relu = curves["relu"]
    assert set(relu.derivative[relu.x != 0].tolist()) == {0.0, 1.0}
    leaky = curves["leaky_relu"].derivative
    assert leaky.min() == pytest.approx(0.1)
    p = curves["softmax"].y  # class 0 against two logits at 0: e^x / (e^x + 2)
    assert torch.allclose(p, torch.exp(curves["softmax"].x) / (torch.exp(curves["softmax"].x) + 2))
    assert torch.allclose(curves["softmax"].derivative, p * (1 - p))
    assert curves["gelu"].max_derivative > 1  # GELU overshoots slope 1 near x = 1.4


def test_show_activations_prints_the_vanishing_gradient(tmp_path, capsys):
    out = tmp_path / "act.png"
    assert main(["show", "activations", "--layers", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sigmoid        0.2500" in printed and "9.54e-07" in printed
    assert _png(out)[0] > 1000


# ---------------------------------------------------------------------- pixels and pooling


def test_pixels_of_a_handwritten_two(data_dir, mnist_test, tmp_path, capsys):
    picture = load_picture("mnist:1", data_dir)
    assert picture.pixels.shape == (28, 28) and "(2)" in picture.label
    assert np.array_equal(picture.pixels, mnist_test.images[1, 0].numpy())
    out = tmp_path / "two.png"
    assert (
        main(
            [
                "show",
                "pixels",
                "mnist:1",
                "--crop",
                "4,4,20,20",
                "--out",
                str(out),
                "--data-dir",
                str(data_dir),
            ]
        )
        == 0
    )
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("mnist test image 1 (2), crop y,x,h,w = 4,4,20,20: 20 rows")
    first = [int(v) for v in rows[1].split()]
    assert first == mnist_test.images[1, 0, 4, 4:24].tolist()
    assert _png(out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["mnist:1", "--crop", "20,20,10,10"], "must lie inside the 28x28 image"),
        (["mnist:1", "--crop", "1,2,3"], "expected four whole numbers"),
        (["mnist:99999"], "test split has images 0..9999"),
        (["PHOTO"], "too large to print as numbers"),
    ],
)
def test_pixels_bad_input_is_explained(data_dir, tmp_path, capsys, args, message):
    args = [str(data_dir / "photos" / "camera.png") if a == "PHOTO" else a for a in args]
    out = tmp_path / "px.png"
    assert main(["show", "pixels", *args, "--out", str(out), "--data-dir", str(data_dir)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_pooling_a_real_photo(data_dir, tmp_path, capsys):
    pixels = load_picture(str(data_dir / "photos" / "chelsea.png")).pixels
    views = {v.name: v for v in pooling_views(pixels, 2)}
    high, mean, low = (views[n].image for n in ("max pooling", "average pooling", "min pooling"))
    assert high.shape == (150, 225, 3)
    assert (high >= mean - 1e-9).all() and (mean >= low - 1e-9).all() and (high > low).any()
    window = pixels[40:42, 60:62].astype(float)
    assert high[20, 30].tolist() == window.max(axis=(0, 1)).tolist()
    assert np.allclose(views["stride conv, box weights"].image, mean)  # the same operation
    assert views["max pooling"].parameters == 0 and views["stride conv, box weights"].parameters
    out = tmp_path / "pool.png"
    assert (
        main(
            [
                "show",
                "pooling",
                str(data_dir / "photos" / "chelsea.png"),
                "--size",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "max pooling                   112x75" in printed and "max difference 0" in printed
    assert _png(out)
    with pytest.raises(CnnlabError, match="at least 2"):
        pooling_views(pixels, 1)


def test_show_samples_one_row_per_class(data_dir, tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert (
        main(
            [
                "show",
                "samples",
                "fashion-mnist",
                "--per-class",
                "3",
                "--out",
                str(out),
                "--data-dir",
                str(data_dir),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    data = load_dataset("fashion-mnist", "train", root=data_dir)
    assert len(lines) == 11 and "Ankle boot" in lines[9]
    for label, line in enumerate(lines[:10]):
        shown = [int(i) for i in line.split("shown: ")[1].split(", ")]
        assert len(shown) == 3 and all(int(data.labels[i]) == label for i in shown)
    assert _png(out)
    assert main(["show", "samples", "mnist", "--per-class", "0", "--out", str(out)]) == 2


# -------------------------------------------------------------------- a trained run inside


def test_top_activations_are_the_largest(lenet, mnist_test):
    images = mnist_test.images[:300]
    tops = top_activations(lenet.model, images, lenet.preprocess, "features.3", 3, 4)
    assert len(tops) == 4 and all(len(row) == 3 for row in tops)
    strongest = torch.stack(
        [
            feature_maps(lenet.model, lenet.preprocess(images[i : i + 1])[0], ["features.3"])[
                "features.3"
            ][:4]
            .flatten(1)
            .max(1)
            .values
            for i in range(len(images))
        ]
    )
    for channel, row in enumerate(tops):
        values = [t.value for t in row]
        assert values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(float(strongest[:, channel].max()), rel=1e-5)
        assert values[-1] == pytest.approx(
            float(strongest[:, channel].topk(3).values[-1]), rel=1e-5
        )
        for top in row:
            y0, x0, y1, x1 = top.box  # conv 5 on pool 2 on conv 5: at most 14 x 14 pixels
            assert 0 < y1 - y0 <= 14 and 0 < x1 - x0 <= 14
    first = top_activations(lenet.model, images[:50], lenet.preprocess, "features.0", 1, 1)
    y0, x0, y1, x1 = first[0][0].box
    assert y1 - y0 <= 5 and x1 - x0 <= 5  # one 5x5 convolution sees 5x5 pixels


def test_perturbations_step_by_step(mnist_test):
    image = mnist_test.images[0]
    assert torch.equal(perturb(image, "rotation", 0), image)
    shifted = perturb(image, "shift", 3)
    assert torch.equal(shifted[:, 3:, 3:], image[:, :-3, :-3]) and shifted[:, :3].sum() == 0
    assert torch.equal(perturb(image, "noise", 32, seed=1), perturb(image, "noise", 32, seed=1))
    moved = (perturb(image, "elastic", 3).float() - image.float()).abs().mean()
    assert 0 < moved < (perturb(image, "elastic", 6).float() - image.float()).abs().mean() + 1
    with pytest.raises(CnnlabError, match="expected one of noise"):
        perturb(image, "blur", 1)


def test_perturbations_of_an_8x8_digit_smooth_the_elastic_field_at_its_scale():
    """scikit-learn's 8 x 8 digits: the elastic field's Gaussian shrinks with the image (sigma
    4 on 28 x 28, as Simard's), so its padding fits and the field still varies over it."""
    from cnnlab.data import load_dataset

    image = load_dataset("digits", "test").images[0]  # 1 x 8 x 8
    for kind, levels in DEFAULT_LEVELS.items():
        for level in levels:
            changed = perturb(image, kind, level)
            assert changed.shape == image.shape and changed.dtype == torch.uint8, (kind, level)
    moved = perturb(image, "elastic", 2).float() - image.float()
    assert moved.abs().sum() > 0


def test_robustness_and_translation_of_a_trained_lenet(lenet, mnist_test):
    image = mnist_test.images[0]  # a 7
    steps = robustness(lenet.model, lenet.preprocess, image, {"noise": [0, 200], "shift": [0, 12]})
    assert steps[0].predicted == 7 and steps[0].confidence == steps[0].reference
    assert steps[1].reference < steps[0].reference  # heavy noise costs confidence
    assert steps[3].reference < 0.5  # a 12-pixel shift pushes the digit out of view
    layers, before, after = translation(lenet.model, lenet.preprocess, image, 2)
    by_name = {layer.name: layer for layer in layers}
    conv, pool, deeper = by_name["features.0"], by_name["features.2"], by_name["features.5"]
    assert conv.cells == 2 and conv.error < 1e-5  # convolution: shifted by 2, exactly
    assert pool.cells == 1 and pool.error < 1e-5  # pooling 2: by 1 cell, still exact
    assert deeper.error > 0.05  # the second pooling would need half a cell: broken
    assert int(before.argmax()) == int(after.argmax()) == 7
    # a shift wider than a small map's compared columns leaves it out instead of failing
    layers, _, _ = translation(lenet.model, lenet.preprocess, image, 6)
    by_name = {layer.name: layer for layer in layers}
    assert by_name["features.0"].cells == 6 and by_name["features.2"].cells == 3
    odd = {layer.name: layer for layer in translation(lenet.model, lenet.preprocess, image, 1)[0]}
    assert odd["features.0"].error < 1e-5 and odd["features.2"].error > 0.05
    assert torch.equal(shift_image(image, 2)[..., 2:], image[..., :-2])


def test_learned_filters_are_matched_to_the_classic_ones(lenet):
    sobel = torch.as_tensor(kernel("sobel-x"), dtype=torch.float32)
    weight = torch.stack([sobel, -torch.as_tensor(kernel("laplacian")).float()])[:, None]
    matches = match_filters(weight)
    assert matches[0].nearest == "sobel-x" and matches[0].correlation == pytest.approx(1.0)
    assert matches[1].nearest == "laplacian" and matches[1].correlation == pytest.approx(-1.0)
    big = resized_kernel(torch.as_tensor(kernel("gaussian", 3, 1.0)), 5)
    assert normalized_correlation(big, torch.as_tensor(kernel("gaussian", 5, 1.0))) > 0.95
    learned = match_filters(lenet.model.features[0].weight.detach())
    assert len(learned) == 6 and all(0 < abs(m.correlation) <= 1 for m in learned)
    assert learned[0].learned.shape == (5, 5)  # mean over the one input channel


def test_show_run_lessons_write_pictures(runs_root, data_dir, tmp_path, capsys):
    base = ["--runs-dir", str(runs_root), "--data-dir", str(data_dir)]
    out = tmp_path / "top.png"
    assert (
        main(
            [
                "show",
                "top-activations",
                "lenet",
                "--layer",
                "features.3",
                "--images",
                "200",
                "--channels",
                "3",
                "--per-channel",
                "2",
                "--out",
                str(out),
                *base,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("\nchannel ") == 3 and _png(out)
    patches = tmp_path / "patches.png"
    assert (
        main(
            [
                "show",
                "top-activations",
                "lenet",
                "--layer",
                "features.0",
                "--images",
                "50",
                "--channels",
                "2",
                "--per-channel",
                "2",
                "--patches",
                "--out",
                str(patches),
                *base,
            ]
        )
        == 0
    )
    assert "field 5x5" in capsys.readouterr().out and _png(patches)
    out = tmp_path / "rob.png"
    assert (
        main(["show", "robustness", "lenet", "test:0", "--steps", "2", "--out", str(out), *base])
        == 0
    )
    printed = capsys.readouterr().out
    assert "worst case:" in printed and printed.count(" predicted ") >= 8
    assert _png(out) and _png(tmp_path / "rob-worst.png")
    assert main(["show", "translation", "lenet", "test:0", "--shift", "2", *base]) == 0
    printed = capsys.readouterr().out
    assert "equivariance breaks first at: features.5" in printed and "prediction " in printed
    assert _png(runs_root / "lenet" / "inspect" / "translation-test-0-2.png")
    assert main(["show", "learned-filters", "cifar", *base]) == 0
    assert capsys.readouterr().out.count("filter ") >= 32
    assert _png(runs_root / "cifar" / "inspect" / "learned-filters-features.0.0.png")
    cat = str(data_dir / "photos" / "chelsea.png")
    assert main(["show", "translation", "cifar", cat, "--shift", "40", *base]) == 2
    assert "--shift 40: expected 1 .. 31" in capsys.readouterr().err
    assert main(["show", "top-activations", "lenet", "--layer", "classifier.1", *base]) == 2
    assert "not C x H x W maps" in capsys.readouterr().err
    assert main(["show", "top-activations", "lenet5", "--layer", "features.0", *base]) == 2
    assert "this is not a run" in capsys.readouterr().err
