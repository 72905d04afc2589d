"""Issue 16's tool lessons: stacked small filters vs one large (L1), grayscale to save
computation (L3), L2-norm pooling in the shape calculator (L6), AlexNet's augmentation (L10),
filtering as OpenCV does it (L14) and graph readouts (L20). Real data from $CNNLAB_DATA."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import arithmetic
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect import image_filters as classic
from cnnlab.inspect.shapes import compare_designs, shape_table

# ---------------------------------------------------------------- L1: two 3x3 vs one 5x5

TWO_3X3 = "two 3x3: conv(64,3,p=1) relu conv(64,3,p=1) relu"
ONE_5X5 = "one 5x5: conv(64,5,p=2) relu"
THREE_3X3 = "conv(32,3,p=1) relu conv(32,3,p=1) relu conv(32,3,p=1) relu"
ONE_7X7 = "conv(32,7,p=3) relu"


def test_compare_prints_field_parameters_and_the_lesson(capsys):
    assert main(["shapes", "--compare", TWO_3X3, "--compare", ONE_5X5, "--input", "64x32x32"]) == 0
    out = capsys.readouterr().out
    small = arithmetic.conv_params(64, 64, (3, 3)) * 2
    large = arithmetic.conv_params(64, 64, (5, 5))
    macs_small = arithmetic.conv_macs(64, 64, (3, 3), (32, 32)) * 2
    macs_large = arithmetic.conv_macs(64, 64, (5, 5), (32, 32))
    assert (small, large) == (73_856, 102_464)
    two, one = (line.split() for line in out.splitlines()[2:4])
    assert two[:3] == ["two", "3x3", "64x32x32"] and two[3] == "5x5"
    assert one[:3] == ["one", "5x5", "64x32x32"] and one[3] == "5x5"
    assert two[4:7] == [f"{small:,}", f"{macs_small:,}", "2"]
    assert one[4:7] == [f"{large:,}", f"{macs_large:,}", "1"]
    assert (
        f"same receptive field (5x5) and output (64x32x32): 'two 3x3' needs {small:,} "
        f"parameters instead of {large:,} ({1 - small / large:.0%} fewer)" in out
    )
    assert "1 more non-linearity (2 vs 1)" in out
    assert "Stacked small filters see what one large filter sees" in out


def test_three_3x3_against_one_7x7_in_json(capsys):
    argv = ["shapes", "--compare", THREE_3X3, "--compare", ONE_7X7, "--input", "32x28x28"]
    assert main([*argv, "--json"]) == 0
    three, seven = json.loads(capsys.readouterr().out)
    assert three["receptive_field"] == seven["receptive_field"] == [7, 7]
    # the course's count without biases: 3 * (3*3*C*C) = 27 C^2 against 49 C^2
    c = 32
    assert three["params"] - 3 * c == 27 * c * c and seven["params"] - c == 49 * c * c
    assert (three["nonlinearities"], seven["nonlinearities"]) == (3, 1)
    assert seven["params_vs_first"] == pytest.approx(seven["params"] / three["params"])


def test_compare_says_nothing_when_the_fields_differ():
    results = compare_designs({"a": "conv(8,3,p=1) relu", "b": "conv(8,5,p=2) relu"}, "8x16x16")
    assert [r["receptive_field"] for r in results] == [[3, 3], [5, 5]]
    from cnnlab.inspect.shapes import compare_lessons

    assert compare_lessons(results) == []


def test_compare_needs_two_designs(capsys):
    assert main(["shapes", "--compare", ONE_5X5, "--input", "64x32x32"]) == 2
    assert "--compare given 1 time(s): expected two or more designs" in capsys.readouterr().err


# ------------------------------------------------------------- L6: L2-norm pooling in shapes


def test_lppool_in_the_shape_calculator_matches_torch():
    report = shape_table("conv(6,5) relu lppool(2) l2pool(3,s=1) lppool(2,norm=3)", "1x28x28")
    rows = report.rows
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5),
        torch.nn.ReLU(),
        torch.nn.LPPool2d(2, 2),
        torch.nn.LPPool2d(2, 3, 1),
        torch.nn.LPPool2d(3, 2),
    )
    shapes = []
    x = torch.zeros(1, 1, 28, 28)
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert [row.output_shape for row in rows] == shapes
    assert [row.receptive_field for row in rows[2:]] == [(6, 6), (10, 10), (12, 12)]
    assert "L2-norm pooling: sqrt(sum x^2)" in rows[2].notes[0]
    assert "(sum x^3)^(1/3)" in rows[4].notes[0]
    assert report.params == arithmetic.conv_params(1, 6, (5, 5))
    with pytest.raises(CnnlabError, match="norm=0: must be at least 1"):
        shape_table("lppool(2,norm=0)", "1x4x4")


def test_summary_explains_torch_lppool():
    from cnnlab.inspect.summary import summary

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.LPPool2d(2, 2))
    report = summary(model, (1, 28, 28), "lp", None)
    row = report.rows[-1]
    assert row.output_shape == (4, 13, 13) and row.receptive_field == (4, 4)
    assert any("L2-norm pooling" in note for note in row.notes)


# ------------------------------------------------------------- L14: filtering as OpenCV does


@pytest.fixture(scope="module")
def cat(data_dir):
    return classic.load_image(data_dir / "photos" / "chelsea.png", gray=True)


@pytest.mark.parametrize("name", ["sobel-x", "sobel-y", "gaussian", "laplacian"])
def test_default_border_equals_opencv_filter2d_on_the_cat(cat, name):
    weights = classic.kernel(name)
    got = classic.correlate(cat, weights)  # the default border
    want = cv2.filter2D(cat, cv2.CV_64F, weights)  # OpenCV's default: BORDER_REFLECT_101
    assert np.abs(got - want).max() < 1e-6
    edge = np.abs(got - want)[:2].max() + np.abs(got - want)[:, :2].max()
    assert edge < 1e-6  # the border rows and columns too, where the modes differ
    old = classic.correlate(cat, weights, "reflect")  # scipy's reflect = OpenCV BORDER_REFLECT
    assert np.abs(old - want).max() > 1e-3  # so the default really changed


def test_filter_cli_default_matches_opencv_and_draws_side_by_side(data_dir, tmp_path, capsys):
    photo = data_dir / "photos" / "chelsea.png"
    out = tmp_path / "blur.png"
    argv = ["filter", str(photo), "--gray", "--kernel", "gaussian", "--out", str(out)]
    assert main(argv) == 0
    gray = classic.load_image(photo, gray=True)
    want = cv2.filter2D(gray, cv2.CV_64F, classic.kernel("gaussian"))
    with Image.open(out) as saved:
        got = np.asarray(saved, dtype=float)
    assert np.abs(got - np.clip(want, 0, 255).round()).max() == 0
    figure = tmp_path / "side.png"
    argv = ["filter", str(photo), "--kernel", "sobel-x", "--side-by-side", "--out", str(figure)]
    assert main(argv) == 0
    with Image.open(figure) as drawn:
        pixels = np.asarray(drawn.convert("RGB"), dtype=float)
    assert drawn.size[0] > 1.5 * drawn.size[1]  # two panels next to each other
    half = pixels.shape[1] // 2
    left, right = pixels[:, :half], pixels[:, half:]
    assert left.std() > 10 and right.std() > 10 and np.abs(left - right).mean() > 5
    assert main(["filter", str(photo), "--border", "reflect101", "--out", str(out)]) == 0
    assert main(["filter", str(photo), "--border", "zero", "--out", str(out)]) == 2
    assert "--border 'zero': expected one of" in capsys.readouterr().err


# ------------------------------------------------------------------ L20: graph readouts


@pytest.fixture(scope="module")
def mutag(data_dir):
    from cnnlab.graph import load_mutag

    return load_mutag(data_dir)


def test_readouts_differ_as_expected_on_a_real_molecule(mutag):
    from cnnlab.graph.ops import readout

    graphs = mutag.graphs[:3]
    h = torch.cat([g.x for g in graphs])  # one-hot atom types: each row sums to 1
    batch = torch.cat([torch.full((g.num_nodes,), i) for i, g in enumerate(graphs)])
    counts = torch.tensor([float(g.num_nodes) for g in graphs])
    assert len(set(counts.tolist())) > 1  # molecules of different sizes
    mean, total, top = (readout(h, batch, 3, how) for how in ("mean", "sum", "max"))
    assert torch.allclose(total, mean * counts[:, None])  # sum = mean x node count
    assert torch.allclose(mean.sum(1), torch.ones(3))  # atom-type fractions
    assert torch.allclose(total.sum(1), counts)  # atom counts: the size is in the vector
    assert ((top == 0) | (top == 1)).all() and (top >= mean).all()  # which atom types occur
    first = graphs[0]
    assert torch.equal(top[0], (first.x.sum(0) > 0).float())


@pytest.mark.parametrize("how", ["mean", "sum", "max"])
def test_each_readout_trains_on_mutag(mutag, how):
    from cnnlab.graph.models import GraphClassifier
    from cnnlab.graph.train import batch_graphs

    torch.manual_seed(0)
    train_ids, _ = mutag.folds[0]
    x, a_hat, batch, y = batch_graphs([mutag.graphs[i] for i in train_ids])
    model = GraphClassifier(x.shape[1], 2, 32, 3, how, dropout=0.0)
    assert model.how == how
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, a_hat, batch, len(train_ids)), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    with torch.no_grad():
        accuracy = (model(x, a_hat, batch, len(train_ids)).argmax(1) == y).float().mean()
    assert accuracy > 0.7  # above the 66% of always saying "mutagenic"


def test_graph_train_cli_readout(data_dir, tmp_path, capsys):
    from cnnlab.graph import GraphConfig

    assert GraphConfig().readout == "mean"  # the course's choice is the default
    base = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path), "--no-progress"]
    argv = ["graph", "train", "--dataset", "mutag", "--epochs", "1", "--readout", "max"]
    assert main([*argv, "--name", "m", *base]) == 0
    out = capsys.readouterr().out
    assert "readout max: each graph's vector is the largest value" in out
    assert "mutag (readout max): 10-fold test accuracy" in out
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["readout"] == "max"
    argv = ["graph", "train", "--dataset", "karate", "--readout", "sum"]
    assert main([*argv, *base]) == 2
    assert "karate is node classification" in capsys.readouterr().err


# ------------------------------------------------------ L3: grayscale to save computation


def _printed_number(line: str, after: str) -> int:
    return int(line.split(after, 1)[1].split()[0].replace(",", ""))


def test_train_gray_cifar_prints_the_saving_and_trains_one_channel(data_dir, tmp_path, capsys):
    from cnnlab.inspect.summary import summary
    from cnnlab.models import create_model
    from cnnlab.runs.load import load_run

    argv = ["train", "--model", "cifar_four", "--dataset", "cifar10", "--data-variant", "subset"]
    argv += ["--train-subset", "200", "--test-subset", "100", "--epochs", "1"]
    argv += ["--image-channels", "1", "--data-dir", str(data_dir), "--runs-dir", str(tmp_path)]
    assert main([*argv, "--name", "gray", "--no-progress"]) == 0
    out = capsys.readouterr().out
    before_training = out.split("test accuracy")[0]
    first = next(line for line in before_training.splitlines() if "first convolution" in line)
    whole = next(line for line in before_training.splitlines() if "whole model:" in line)
    trained = load_run(tmp_path / "gray")
    conv = trained.model.features[0]
    assert trained.in_channels == 1 and conv.in_channels == 1  # the run's model reads gray
    # cnnlab's own counts: the run's (1-channel) model and the same design with 3 channels
    gray = summary(trained.model, (1, 32, 32))
    rgb = summary(
        create_model("cifar_four", num_classes=10, in_channels=3, input_size=32), (3, 32, 32)
    )
    side = gray.rows[0].output_shape[1]
    kernel = conv.kernel_size
    assert gray.rows[0].macs == arithmetic.conv_macs(1, conv.out_channels, kernel, (side, side))
    assert _printed_number(first, ": ") == rgb.rows[0].macs
    assert _printed_number(first, "channels, ") == gray.rows[0].macs
    assert _printed_number(first, "(saves ") == rgb.rows[0].macs - gray.rows[0].macs
    assert _printed_number(whole, "(saves ") == rgb.macs - gray.macs
    assert _printed_number(whole, "whole model: ") == rgb.macs
    assert rgb.rows[0].macs == 3 * gray.rows[0].macs  # the first layer's cost scales with C_in
    assert rgb.macs - gray.macs == rgb.rows[0].macs - gray.rows[0].macs  # only it changes


def test_image_size_reaches_the_model_and_a_bad_value_is_named(data_dir, tmp_path, capsys):
    from cnnlab.runs.load import load_run

    argv = ["train", "--model", "lenet5", "--dataset", "mnist", "--train-subset", "128"]
    argv += ["--test-subset", "64", "--epochs", "1", "--image-size", "32", "--image-channels"]
    argv += ["1", "--data-dir", str(data_dir), "--runs-dir", str(tmp_path), "--no-progress"]
    assert main([*argv, "--name", "lenet32"]) == 0
    assert "cost of the input channels (lenet5, 32x32 images" in capsys.readouterr().out
    trained = load_run(tmp_path / "lenet32")
    assert trained.input_size == 32 and trained.config.image_size == 32
    assert main(["train", "--image-size", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "image_size=0" in capsys.readouterr().err


# ---------------------------------------------------------- L10: AlexNet's augmentation


def test_pca_basis_of_a_known_covariance():
    from cnnlab.data import augment as A

    # a covariance built from chosen eigenvectors (an orthonormal basis) and eigenvalues
    q, _ = np.linalg.qr(np.array([[1.0, 0.2, 0.1], [0.9, -0.5, 0.3], [0.8, 0.4, -0.7]]))
    values = np.array([0.05, 0.004, 0.0002])
    covariance = q @ np.diag(values) @ q.T
    basis = A.pca_basis_of_covariance(covariance)
    np.testing.assert_allclose(basis.eigenvalues, values, rtol=1e-9)
    for i in range(3):  # the same directions, up to the sign convention
        assert abs(abs(basis.eigenvectors[:, i] @ q[:, i]) - 1) < 1e-9
        np.testing.assert_allclose(
            covariance @ basis.eigenvectors[:, i], values[i] * basis.eigenvectors[:, i], atol=1e-12
        )
    np.testing.assert_allclose(basis.eigenvectors.T @ basis.eigenvectors, np.eye(3), atol=1e-12)
    with pytest.raises(CnnlabError, match="symmetric 3 x 3"):
        A.pca_basis_of_covariance(np.ones((2, 2)))


def test_pca_shift_is_the_papers_sum_and_fancy_pca_adds_it(data_dir):
    from cnnlab.data import augment as A
    from cnnlab.data.datasets import load_dataset

    cifar = load_dataset("cifar10", "train", data_dir, variant="subset").images[:500]
    basis = A.pca_basis(cifar)
    pixels = cifar.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy() / 255
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(np.cov(pixels, rowvar=False)))[::-1], basis.eigenvalues
    )
    assert basis.eigenvalues[0] > 5 * basis.eigenvalues[1]  # brightness dominates photos
    assert (basis.eigenvectors[:, 0] > 0.4).all()  # and is roughly (1, 1, 1) / sqrt(3)
    alpha = np.array([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    want = sum(alpha[0, i] * basis.eigenvalues[i] * basis.eigenvectors[:, i] for i in range(3))
    shift = A.pca_shift(basis, alpha)
    np.testing.assert_allclose(shift[0], want, atol=1e-15)
    assert (shift[1] == 0).all()
    # fancy_pca: every pixel of an image moves by that image's shift (within rounding)
    mid = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    shifted, used = A.fancy_pca(mid, basis, 1.0, generator)
    alphas = torch.randn((4, 3), generator=torch.Generator().manual_seed(3)).double().numpy()
    np.testing.assert_allclose(used, A.pca_shift(basis, alphas) * 255)
    moved = shifted.double().numpy() - 128
    assert np.abs(moved - used[:, :, None, None]).max() <= 0.5 + 1e-9
    assert (moved.std(axis=(2, 3)) == 0).all()  # one shift per image and channel


def test_alexnet_crops_flips_and_shapes(data_dir):
    from cnnlab.data import augment as A
    from cnnlab.data.batches import Preprocess
    from cnnlab.data.datasets import load_dataset

    photos = load_dataset("cifar10", "train", data_dir, variant="subset").images[:6]
    big = A.resize_and_center_crop(photos)
    assert big.shape == (6, 3, 256, 256) and big.dtype == torch.uint8
    wide = torch.zeros((1, 3, 300, 451), dtype=torch.uint8)  # the cat photo's shape
    assert A.resize_and_center_crop(wide).shape == (1, 3, 256, 256)
    crops = A.random_crops(big, 224, torch.Generator().manual_seed(0))
    assert crops.shape == (6, 3, 224, 224)
    for image, crop in zip(big, crops):  # every crop is a window of its own image
        windows = image.unfold(1, 224, 1).unfold(2, 224, 1)  # 3 x 33 x 33 x 224 x 224
        found = (windows == crop[:, None, None]).flatten(3).all(-1).all(0)
        assert found.any()
    augment = A.AlexNetAugment(basis=A.pca_basis(photos))
    preprocess = Preprocess([0.0] * 3, [1.0] * 3, augmentation=augment)
    train = preprocess(big, augment=True, generator=torch.Generator().manual_seed(1))
    test = preprocess(big, augment=False)
    assert train.shape == test.shape == (6, 3, 224, 224)
    assert torch.equal(test, A.center_crop(big).float() / 255)
    with pytest.raises(CnnlabError, match="crop 224: larger than the 32x32 images"):
        A.random_crops(photos)


def test_show_augmentations_draws_a_grid_of_the_cat(data_dir, tmp_path, capsys):
    out = tmp_path / "augment.png"
    photo = str(data_dir / "photos" / "chelsea.png")
    argv = ["show", "augmentations", photo, "--n", "5", "--pca-std", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lambda_1 = " in printed and "p_3 = " in printed
    with Image.open(out) as drawn:
        assert drawn.size[0] > 2 * drawn.size[1]  # one row of 6 cells
    from cnnlab.inspect.augment_view import augmented_samples

    result = augmented_samples(photo, 5, pca_std=1.0, seed=0)
    assert result.samples.shape == (5, 3, 224, 224)
    assert len({tuple(s.flatten()[:50].tolist()) for s in result.samples}) == 5  # all differ
    assert np.abs(result.shifts).max() > 1  # visible colour shifts at std 1
    data = augmented_samples("cifar10", 4, str(data_dir), pca_std=0, seed=0)
    assert data.basis is None and (data.shifts == 0).all() and len(data.labels) == 4
    assert main(["show", "augmentations", photo, "--n", "0", "--out", str(out)]) == 2
    assert "--n 0: expected 1 to 64" in capsys.readouterr().err
    assert main(["show", "augmentations", photo, "--pca-std", "-1", "--out", str(out)]) == 2
    assert "--pca-std -1.0: expected" in capsys.readouterr().err


def test_alexnet_augmentation_trains_a_real_cifar_run(data_dir, tmp_path):
    """--augment --augment-style alexnet: every training batch is scaled up, cropped back to
    32x32, flipped and colour-shifted by fancy PCA; test images pass unchanged."""
    from cnnlab.cli import main
    from cnnlab.data import augment as A
    from cnnlab.runs.load import load_run
    from cnnlab.train import alexnet_augmentation

    args = ["train", "--model", "cifar_four", "--dataset", "cifar10", "--data-variant", "subset"]
    args += ["--data-dir", str(data_dir), "--train-subset", "512", "--test-subset", "200"]
    args += ["--epochs", "1", "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.02"]
    args += ["--augment", "--augment-style", "alexnet", "--device", "cpu", "--no-progress"]
    assert main([*args, "--runs-dir", str(tmp_path), "--name", "alex"]) == 0
    run = load_run(tmp_path / "alex")
    assert run.config.augment_style == "alexnet"
    test = run.test_split()
    step = alexnet_augmentation(test)
    assert isinstance(step, A.AlexNetTraining) and step.basis is not None and step.flip
    batch = test.images[:16]
    assert torch.equal(step(batch, augment=False), batch)  # test images: unchanged
    changed = step(batch, augment=True, generator=torch.Generator().manual_seed(0))
    assert changed.shape == batch.shape and changed.dtype == torch.uint8
    assert not torch.equal(changed, batch)
    with pytest.raises(SystemExit) as refused:  # argparse's choices, one line, exit 2
        main([*args[:-4], "sideways", "--device", "cpu", "--runs-dir", str(tmp_path)])
    assert refused.value.code == 2
    from cnnlab.train import TrainConfig

    with pytest.raises(CnnlabError, match="augment_style 'sideways'|augment_style='sideways'"):
        TrainConfig(augment_style="sideways")
