"""Classic filters on the real photos in $CNNLAB_DATA/photos, through cnnlab's own correlation,
against scipy.ndimage and OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect import image_filters as classic


@pytest.fixture(scope="module")
def cat(data_dir):
    return classic.load_image(data_dir / "photos" / "chelsea.png")


@pytest.fixture(scope="module")
def camera(data_dir):
    return classic.load_image(data_dir / "photos" / "camera.png")


@pytest.mark.parametrize("name", classic.KERNEL_NAMES)
@pytest.mark.parametrize("border", sorted(classic.BORDERS))
def test_every_kernel_agrees_with_scipy(name, border, cat, camera):
    weights = classic.kernel(name)
    gray = camera[::2, ::2]  # 256 x 256 photo, halved to keep the test quick
    assert (
        np.abs(
            classic.correlate(gray, weights, border) - ndi.correlate(gray, weights, mode=border)
        ).max()
        < 1e-9
    )
    colour = cat[:120, :160]
    want = np.stack([ndi.correlate(colour[..., c], weights, mode=border) for c in range(3)], -1)
    assert np.abs(classic.correlate(colour, weights, border) - want).max() < 1e-9


def test_true_convolution_matches_scipy_convolve(camera):
    for name in ("sobel-x", "emboss", "gaussian"):
        weights = classic.kernel(name)
        got = classic.correlate(camera, weights, "reflect", convolve=True)
        assert np.abs(got - ndi.convolve(camera, weights, mode="reflect")).max() < 1e-9


@pytest.mark.parametrize("size", [3, 5, 7, 9, 11, 15])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 3.0])
def test_gaussian_matches_opencv(size, sigma):
    want = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F).ravel()
    assert np.abs(classic.gaussian_1d(size, sigma) - want).max() < 1e-15
    assert np.allclose(classic.gaussian(size, sigma), np.outer(want, want), atol=1e-15)
    # OpenCV's own filter with that kernel gives the same picture (border: reflect101 = mirror)


def test_gaussian_rules_and_the_classic_273_kernel(camera):
    assert classic.gaussian(5, 1.0).sum() == pytest.approx(1)
    assert classic.gaussian_1d(11, None) == pytest.approx(
        cv2.getGaussianKernel(11, 0, ktype=cv2.CV_64F).ravel()
    )  # sigma from OpenCV's size rule
    k273 = classic.kernel("gaussian-273")
    assert k273.sum() == pytest.approx(1) and k273[2, 2] == pytest.approx(41 / 273)
    # the integer kernel approximates the sampled Gaussian of sigma 1
    assert np.abs(k273 - classic.gaussian(5, 1.0)).max() < 0.015  # 41/273 vs 0.162 at the centre
    with pytest.raises(CnnlabError, match="odd size"):
        classic.gaussian(4, 1.0)
    blurred = classic.correlate(camera, classic.gaussian(7, 2.0))
    assert blurred.std() < camera.std()  # smoothing removes detail
    want = cv2.GaussianBlur(camera, (7, 7), 2.0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(blurred - want).max() < 1e-6


def test_correlation_and_convolution_differ_on_asymmetric_kernels(camera):
    image = camera[100:180, 100:180]
    sobel = classic.kernel("sobel-x")
    corr = classic.correlate(image, sobel)
    conv = classic.correlate(image, sobel, convolve=True)
    assert np.allclose(conv, -corr)  # rotating sobel-x by 180 degrees flips its sign
    lap = classic.kernel("laplacian")
    assert np.allclose(classic.correlate(image, lap), classic.correlate(image, lap, convolve=True))
    emboss = classic.kernel("emboss")
    difference = classic.correlate(image, emboss) - classic.correlate(image, emboss, convolve=True)
    assert np.abs(difference).max() > 10


def test_edges_respond_where_the_photo_changes(camera):
    magnitude = classic.edge_magnitude(camera)
    assert magnitude.shape == camera.shape
    flat = magnitude[5:25, 5:25]  # the sky in the top-left corner
    assert flat.mean() < np.percentile(magnitude, 90)
    gx = classic.correlate(camera, classic.kernel("sobel-x"))
    ramp = np.tile(np.arange(20.0), (10, 1))  # brightness rising by 1 per column
    assert np.allclose(classic.correlate(ramp, classic.kernel("sobel-x"))[:, 2:-2], 8)
    assert gx.shape == camera.shape


def test_filter_command(data_dir, tmp_path, capsys):
    photo = data_dir / "photos" / "chelsea.png"
    out = tmp_path / "edges.png"
    assert main(["filter", str(photo), "--kernel", "sobel-x", "--gray", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[[-1  0  1]" in printed and "scaled to 0..255" in printed
    with Image.open(out) as image:
        assert image.size == (451, 300) and image.mode == "L"
    out2 = tmp_path / "blur.png"
    assert (
        main(
            [
                "filter",
                str(photo),
                "--kernel",
                "gaussian",
                "--size",
                "7",
                "--sigma",
                "2",
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    with Image.open(out2) as image:
        assert image.mode == "RGB"
        blurred = np.asarray(image, dtype=float)
    want = classic.correlate(classic.load_image(photo), classic.gaussian(7, 2.0))
    assert np.abs(blurred - np.clip(want, 0, 255).round()).max() <= 1
    out3 = tmp_path / "compare.png"
    assert main(["filter", str(photo), "--kernel", "emboss", "--compare", "--out", str(out3)]) == 0
    assert "largest |correlation - convolution|" in capsys.readouterr().out
    assert out3.stat().st_size > 10_000
    assert main(["filter", "--list"]) == 0
    assert "gaussian-273" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kernel", "sobel-z"], "unknown kernel 'sobel-z'. Did you mean sobel-"),
        (["--kernel", "gaussian", "--size", "4"], "odd size"),
        (["--border", "zero"], "border 'zero'"),
    ],
)
def test_filter_bad_input_writes_nothing(data_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out.png"
    photo = data_dir / "photos" / "camera.png"
    assert main(["filter", str(photo), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_filter_rejects_corrupt_images(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out.png"
    assert main(["filter", str(bad), "--out", str(out)]) == 2
    assert "not an image" in capsys.readouterr().err and not out.exists()


# --------------------------------------------------- sigma 0 as OpenCV, and values refused


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9])
def test_sigma_0_takes_opencvs_fixed_kernels_bit_for_bit(size):
    want = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F).ravel()
    assert np.array_equal(classic.gaussian_1d(size, 0), want)
    assert np.array_equal(classic.gaussian_1d(size, None), want)
    assert np.array_equal(classic.kernel("gaussian", size, 0), np.outer(want, want))
    # the sampled formula differs: this is what the old code gave for sigma 0
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    sampled = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    assert size == 1 or np.abs(sampled / sampled.sum() - want).max() > 1e-3


def test_every_size_and_sigma_matches_opencv():
    """Sizes 1 to 255 and sigmas from 0 (OpenCV's size rule) to 1000. OpenCV evaluates exp
    with its own software float, which differs from the C library's in the last bit or two:
    equal to within 3 units in the last place of the largest weights (1.1e-16 each)."""
    for size in range(1, 256, 2):
        for sigma in (0, 0.1, 0.8, 1.0, 2.5, 7, 40, 1000):
            want = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F).ravel()
            got = classic.gaussian_1d(size, sigma)
            assert np.abs(got - want).max() < 3.4e-16, (size, sigma)
            assert got.sum() == pytest.approx(1, abs=1e-15)


@pytest.mark.parametrize("size", [3, 5, 7, 9, 11, 21])
def test_filter_with_sigma_0_equals_opencvs_blur(size, camera, tmp_path, capsys, data_dir):
    image = camera[:128, :128]
    got = classic.correlate(image, classic.kernel("gaussian", size, 0))
    want = cv2.GaussianBlur(image, (size, size), 0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(got - want).max() < 1e-9
    out = tmp_path / "blur.png"
    photo = data_dir / "photos" / "camera.png"
    argv = ["filter", str(photo), "--kernel", "gaussian", "--size", str(size), "--sigma", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sigma 0: derived from the size as OpenCV does" in printed
    assert ("fixed kernel" in printed) == (size <= 9)
    with Image.open(out) as saved:
        blurred = np.asarray(saved, dtype=float)
    whole = cv2.GaussianBlur(camera, (size, size), 0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(blurred - np.clip(whole, 0, 255).round()).max() <= 1


@pytest.mark.parametrize(
    "args, bad",
    [
        (["--kernel", "gaussian", "--size", "100001"], "--size 100001"),  # a 74.5 GiB kernel
        (["--kernel", "gaussian", "--sigma", "1e308"], "--sigma 1e+308"),
        (["--kernel", "gaussian", "--size", "0"], "--size 0"),
        (["--kernel", "box", "--size", "0"], "--size 0"),
        (["--kernel", "gaussian", "--size", "-3"], "--size -3"),
        (["--kernel", "gaussian", "--sigma", "-1"], "--sigma -1"),
        (["--kernel", "box", "--size", "4"], "--size 4"),
        (["--kernel", "gaussian", "--sigma", "nan"], "--sigma nan"),
        (["--kernel", "gaussian", "--sigma", "inf"], "--sigma inf"),
        (["--kernel", "gaussian", "--sigma", "1001"], "--sigma 1001"),
        (["--kernel", "sobel-x", "--size", "5"], "--size 5"),
        (["--kernel", "box", "--sigma", "2"], "--sigma 2"),
        (["--kernel", "gaussian", "--size", "257"], "--size 257"),
        (["--border", "zero"], "--border 'zero'"),
    ],
)
def test_filter_refuses_bad_values_in_one_line_and_writes_nothing(
    args, bad, data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the default output would land here
    photo = data_dir / "photos" / "camera.png"
    assert main(["filter", str(photo), *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and err.startswith("cnnlab filter: error: ")
    assert bad in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing/out.png", "file.txt/out.png", "out.jpg"])
def test_filter_checks_the_output_path_before_the_work(where, data_dir, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    photo = data_dir / "photos" / "camera.png"
    assert main(["filter", str(photo), "--out", str(tmp_path / where)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the kernel or the image was even shown
    assert "--out" in captured.err and "\n" not in captured.err.strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_kernel_larger_than_the_image_or_too_slow_is_refused(tmp_path, capsys, monkeypatch):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(small)
    out = tmp_path / "out.png"
    assert main(["filter", str(small), "--kernel", "box", "--size", "21", "--out", str(out)]) == 2
    assert "--size at most 19" in capsys.readouterr().err and not out.exists()
    assert main(["filter", str(small), "--kernel", "box", "--size", "19", "--out", str(out)]) == 0
    out.unlink()
    monkeypatch.setattr(classic, "MAX_WORK", 20 * 30 * 25 - 1)
    assert main(["filter", str(small), "--kernel", "box", "--size", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--size 5 on a 30x20 image: 1.5e+04 multiply-adds" in err and not out.exists()


def test_large_kernels_are_correlated_in_bands_of_rows(camera, monkeypatch):
    """im2col holds size^2 values per pixel: the rows go in bands that fit BAND_BYTES, with the
    same result as one pass."""
    image = camera[:61, :50]
    weights = classic.gaussian(9, 2.0)
    whole = classic.correlate(image, weights)
    monkeypatch.setattr(classic, "BAND_BYTES", 8 * 50 * 81 * 7)  # 7 rows a band: 9 bands
    banded = classic.correlate(image, weights)
    assert banded.shape == image.shape
    assert np.abs(banded - whole).max() < 1e-9
    # the default border is reflect-101 (OpenCV's filter2D default), scipy's "mirror"
    assert np.abs(banded - ndi.correlate(image, weights, mode="mirror")).max() < 1e-9
