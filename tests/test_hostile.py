"""Hostile input, one row per case: every command refuses bad input with exit code 2 and one
line on stderr that names the value, and leaves the file tree exactly as it was.

Each row runs ``cnnlab.cli.main(argv)`` in-process in a fresh temporary folder, after an
optional set-up that builds what the case needs there (a trained run, a damaged checkpoint, a
file where a folder should be). The folder is fingerprinted before and after: names, sizes and
modification times of everything under it must be unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main

# ------------------------------------------------------------------------------- set-ups


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 1-epoch LeNet-5 run on scikit-learn's digits (about 3 s), copied per case."""
    root = tmp_path_factory.mktemp("hostile-runs")
    assert (
        main(
            ["train", "--epochs", "1", "--no-progress", "--runs-dir", str(root), "--name", "digits"]
        )
        == 0
    )
    return root / "digits"


def _with_run(tmp: Path, run: Path) -> None:
    shutil.copytree(run, tmp / "runs" / "digits")


def _forged(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    """A copy of the digits run whose checkpoint was edited by ``change``."""

    def setup(tmp: Path, run: Path) -> None:
        _with_run(tmp, run)
        path = tmp / "runs" / "digits" / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)

    return setup


def _empty_checkpoint(tmp: Path, run: Path) -> None:
    _with_run(tmp, run)
    (tmp / "runs" / "digits" / "checkpoint.pt").write_bytes(b"")


def _metrics(text: str | None) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, run: Path) -> None:
        _with_run(tmp, run)
        path = tmp / "runs" / "digits" / "metrics.csv"
        if text is None:
            path.unlink()
        else:
            path.write_text(text)

    return setup


def _a_file(tmp: Path, run: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def _file(name: str, text: str) -> Callable[[Path, Path], None]:
    return lambda tmp, run: (tmp / name).write_text(text)


def _pop(key: str) -> Callable[[dict], None]:
    return lambda state: state.pop(key)


def _spec(**values: object) -> Callable[[dict], None]:
    return lambda state: state["model_spec"].update(values)


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda state: state.__setitem__(key, value)


def _data() -> Path:
    from conftest import data_root

    return data_root()


class _RunsCode:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __reduce__(self):
        import os

        return (os.system, ("touch CODE_RAN",))


def _crafted_cifar_batches(tmp: Path, run: Path) -> None:
    import pickle

    folder = tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": _RunsCode(), "labels": [0]}, 2))


def _cifar_tar(cut: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, run: Path) -> None:
        (tmp / "data" / "cifar10").mkdir(parents=True)
        (tmp / "data" / "cifar10" / "cifar10-jpeg.tar").write_bytes(cut(_data()))

    return setup


def _first_40_images(data: Path) -> bytes:
    """The real tar cut after its first 40 images (test images: that split comes first)."""
    import tarfile

    source = data / "cifar10" / "cifar10-jpeg.tar"
    with tarfile.open(source) as tar:
        files = []
        for member in tar:
            files += [member] if member.isfile() else []
            if len(files) > 40:
                break
    with source.open("rb") as handle:
        return handle.read(files[40].offset)


def _half_lossless_subset(tmp: Path, run: Path) -> None:
    source = (_data() / "cifar10" / "cifar10_lossless_subset.npz").read_bytes()
    (tmp / "data" / "cifar10").mkdir(parents=True)
    (tmp / "data" / "cifar10" / "cifar10_lossless_subset.npz").write_bytes(
        source[: len(source) // 2]
    )


def _read_only_run(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """The run folder fails every write as a read-only mount does (root ignores permission
    bits, so the failure is made where cnnlab tries a real write)."""
    import errno
    import tempfile

    real, run = tempfile.TemporaryFile, (tmp / "runs" / "digits").resolve()

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(run):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)


def _inspect_is_a_file(tmp: Path, run: Path) -> None:
    _with_run(tmp, run)
    (tmp / "runs" / "digits" / "inspect").write_text("a file where the figures' folder goes")


def _offline_torch_cache(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """No network, and torch's cache under the case's folder (it must not appear there)."""
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def _short_mnist_labels(tmp: Path, run: Path) -> None:
    import gzip

    shutil.copytree(_data() / "mnist", tmp / "data" / "mnist")
    for path in (tmp / "data" / "mnist").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    labels = tmp / "data" / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:5]))


# --------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    argv: list[str]
    names: str  # the one-line error must contain this (the bad value, as the user wrote it)
    setup: Callable[[Path, Path], None] | None = None
    marks: tuple = field(default_factory=tuple)
    patch: Callable[[pytest.MonkeyPatch, Path], None] | None = None  # the process's world


TRAIN = ["train", "--no-progress", "--epochs", "1"]
LONG_NAME = "n" * 300


def _cat() -> str:
    return str(Path(os.environ.get("CNNLAB_DATA", "../shared/data")) / "photos" / "chelsea.png")


FILTER = ["filter", _cat()]
GRAPH = ["graph", "train", "--dataset", "karate", "--no-progress"]
TRANSFER = ["transfer", "--from", "digits", "--dataset", "digits", "--no-progress"]

CASES: dict[str, Case] = {
    # ---- train: settings that cannot train
    "train batch larger than the data, --overwrite": Case(
        [*TRAIN, "--name", "digits", "--overwrite", "--batch-size", "100000"], "100000", _with_run
    ),
    "train seed -1": Case([*TRAIN, "--seed", "-1"], "seed=-1"),
    "train seed too big": Case([*TRAIN, "--seed", "99999999999"], "99999999999"),
    "train device foo": Case([*TRAIN, "--device", "foo"], "'foo'"),
    "train device cuda without a GPU": Case([*TRAIN, "--device", "cuda"], "'cuda'"),
    "train amp fp16 on the CPU": Case([*TRAIN, "--amp", "fp16", "--device", "cpu"], "fp16"),
    "train momentum -1": Case([*TRAIN, "--optimizer", "sgd", "--momentum", "-1"], "-1"),
    "train nesterov without momentum": Case(
        [*TRAIN, "--optimizer", "sgd", "--nesterov", "--momentum", "0"], "--nesterov"
    ),
    "train warmup nan": Case([*TRAIN, "--warmup-epochs", "nan"], "nan"),
    "train step epochs 0": Case([*TRAIN, "--schedule", "step", "--step-epochs", "0"], "=0"),
    "train 300-character name": Case([*TRAIN, "--name", LONG_NAME], "300 bytes"),
    "train runs-dir under a file": Case([*TRAIN, "--runs-dir", "afile/runs"], "afile", _a_file),
    "train lr inf": Case([*TRAIN, "--lr", "inf"], "lr=inf"),
    "train lr 1e308": Case([*TRAIN, "--lr", "1e308"], "1e+308"),
    "train lr nan": Case([*TRAIN, "--lr", "nan"], "lr=nan"),
    "train -O modern=maybe": Case([*TRAIN, "-O", "modern=maybe"], "modern='maybe'"),
    "train weight decay -1": Case([*TRAIN, "--weight-decay", "-1"], "-1"),
    "train subset 0": Case([*TRAIN, "--train-subset", "0"], "train_subset=0"),
    "train seed not a number": Case([*TRAIN, "--seed", "x"], "'x'"),
    "train existing name": Case([*TRAIN, "--name", "digits"], "digits", _with_run),
    "train resume a 0-byte checkpoint": Case(
        ["train", "--resume", "digits", "--epochs", "2"], "0 bytes", _empty_checkpoint
    ),
    # ---- data: crafted, truncated or damaged files
    "train on crafted CIFAR batches (code in a pickle)": Case(
        [*TRAIN, "--dataset", "cifar10", "--data-variant", "official", "--data-dir", "data"],
        "refusing to load",
        _crafted_cifar_batches,
    ),
    "train on a CIFAR tar cut after 40 images": Case(
        [*TRAIN, "--dataset", "cifar10", "--data-variant", "jpeg", "--data-dir", "data"],
        "found 0 of the 50,000 CIFAR-10 train images expected",
        _cifar_tar(_first_40_images),
    ),
    "train on a garbage CIFAR tar": Case(
        [*TRAIN, "--dataset", "cifar10", "--data-variant", "jpeg", "--data-dir", "data"],
        "not a readable tar (not a tar archive)",
        _cifar_tar(lambda data: bytes(range(256)) * 20),
    ),
    "train on half a lossless subset": Case(
        [*TRAIN, "--dataset", "cifar10", "--data-variant", "subset", "--data-dir", "data"],
        "cifar10_lossless_subset.npz: not a readable CIFAR-10 npz",
        _half_lossless_subset,
    ),
    "train on MNIST labels cut in the header": Case(
        [*TRAIN, "--dataset", "mnist", "--data-dir", "data"],
        "too short for an idx labels file",
        _short_mnist_labels,
    ),
    # ---- graph training and transfer settings
    "graph train lr nan": Case([*GRAPH, "--lr", "nan"], "lr=nan"),
    "graph train hidden -4": Case([*GRAPH, "--hidden", "-4"], "hidden=[-4]"),
    "graph train hidden 0": Case([*GRAPH, "--hidden", "0"], "hidden=[0]"),
    "transfer backbone lr factor -1": Case(
        [*TRANSFER, "--backbone-lr-factor", "-1"], "--backbone-lr-factor -1.0"
    ),
    "transfer backbone lr factor nan": Case(
        [*TRANSFER, "--backbone-lr-factor", "nan"], "--backbone-lr-factor nan"
    ),
    "transfer from torchvision:resnet18 offline (no torch cache folder left)": Case(
        ["transfer", "--from", "torchvision:resnet18", "--dataset", "digits", "--no-progress"],
        "cannot download its ImageNet weights (URLError",
        patch=_offline_torch_cache,
    ),
    # ---- shapes: layer lists and files that cannot be read
    "shapes conv(6,5xq)": Case(["shapes", "conv(6,5xq)", "--input", "1x28x28"], "5xq"),
    "shapes fc(abc)": Case(["shapes", "fc(abc)", "--input", "1x28x28"], "abc"),
    "shapes conv(6,5,g=0)": Case(["shapes", "conv(6,5,g=0)", "--input", "1x28x28"], "groups=0"),
    "shapes adaptiveavgpool(0)": Case(
        ["shapes", "adaptiveavgpool(0)", "--input", "1x28x28"], "out=0"
    ),
    "shapes conv(6,5.5)": Case(["shapes", "conv(6,5.5)", "--input", "1x28x28"], "5.5"),
    "shapes JSON input 'abc'": Case(
        ["shapes", "in.json"],
        "'abc'",
        _file("in.json", '{"input": "abc", "layers": ["conv(6,5)"]}'),
    ),
    "shapes JSON input 5": Case(
        ["shapes", "in.json"], "input=5", _file("in.json", '{"input": 5, "layers": ["conv(6,5)"]}')
    ),
    "shapes JSON out 'six'": Case(
        ["shapes", "in.json"],
        "six",
        _file(
            "in.json",
            '{"input": [1, 28, 28], "layers": [{"type": "conv", "out": "six", "kernel": 5}]}',
        ),
    ),
    "shapes conv(-1,3)": Case(["shapes", "conv(-1,3)", "--input", "1x28x28"], "out=-1"),
    "shapes conv(0,5)": Case(["shapes", "conv(0,5)", "--input", "1x28x28"], "out=0"),
    "shapes flatten fc(-5)": Case(["shapes", "flatten fc(-5)", "--input", "1x28x28"], "out=-5"),
    "shapes dropout(7)": Case(["shapes", "dropout(7)", "--input", "1x28x28"], "p=7"),
    "shapes stride 0": Case(["shapes", "conv(6,3,s=0)", "--input", "1x28x28"], "stride=0"),
    "shapes padding -1": Case(["shapes", "conv(6,3,p=-1)", "--input", "1x28x28"], "padding=-1"),
    # ---- summary
    "summary builtins:int": Case(["summary", "builtins:int"], "builtins:int"),
    "summary a run on 3x8x8": Case(["summary", "digits", "--input", "3x8x8"], "3x8x8", _with_run),
    "summary lenet5 on 1x28x28x28": Case(
        ["summary", "lenet5", "--input", "1x28x28x28"], "1x28x28x28"
    ),
    # ---- filter
    "filter size 100001": Case([*FILTER, "--kernel", "gaussian", "--size", "100001"], "100001"),
    "filter sigma 1e308": Case([*FILTER, "--kernel", "gaussian", "--sigma", "1e308"], "1e+308"),
    "filter size 0": Case([*FILTER, "--kernel", "box", "--size", "0"], "--size 0"),
    "filter sigma -1": Case([*FILTER, "--kernel", "gaussian", "--sigma", "-1"], "--sigma -1"),
    "filter box of even size": Case([*FILTER, "--kernel", "box", "--size", "4"], "--size 4"),
    "filter sigma nan": Case([*FILTER, "--kernel", "gaussian", "--sigma", "nan"], "--sigma nan"),
    "filter --out into a missing folder": Case([*FILTER, "--out", "missing/out.png"], "missing"),
    "filter --out under a file": Case([*FILTER, "--out", "afile/out.png"], "afile", _a_file),
    # ---- serve
    "serve port 70000": Case(["serve", "--port", "70000"], "--port 70000: expected 1-65535"),
    "serve port -1": Case(["serve", "--port", "-1"], "--port -1: expected 1-65535"),
    "serve unknown host": Case(
        ["serve", "--port", "0", "--host", "nosuch.invalid"], "--host 'nosuch.invalid'"
    ),
    # ---- eval: damaged or forged checkpoints
    "eval 0-byte checkpoint": Case(["eval", "digits"], "0 bytes", _empty_checkpoint),
    "eval checkpoint without num_classes": Case(
        ["eval", "digits"], "num_classes", _forged(lambda s: s["model_spec"].pop("num_classes"))
    ),
    "eval checkpoint without normalization": Case(
        ["eval", "digits"], "normalization", _forged(_pop("normalization"))
    ),
    "eval model_spec is a string": Case(
        ["eval", "digits"], "model_spec", _forged(_set("model_spec", "lenet5"))
    ),
    "eval forged input_size 100000": Case(
        ["eval", "digits"], "input_size=100000", _forged(_spec(input_size=100000))
    ),
    "eval forged spec of a bigger model": Case(
        ["eval", "digits"], "mnist_cnn", _forged(_spec(name="mnist_cnn", input_size=4000))
    ),
    "eval missing run": Case(["eval", "nothere"], "'nothere'"),
    # ---- show: missing or damaged files, output paths
    "show curves without metrics.csv": Case(
        ["show", "curves", "digits"], "metrics.csv", _metrics(None)
    ),
    "show curves with a malformed metrics.csv": Case(
        ["show", "curves", "digits"], "metrics.csv", _metrics("epoch,train_loss\n1,abc\n")
    ),
    "show curves with garbage metrics.csv": Case(
        ["show", "curves", "digits"], "metrics.csv", _metrics("\x00\x01garbage")
    ),
    "show featuremaps --out into a missing folder": Case(
        ["show", "featuremaps", "digits", "test:0", "--out", "missing/maps.png"],
        "missing",
        _with_run,
    ),
    "show filters --out into a missing folder": Case(
        ["show", "filters", "digits", "--out", "missing/filters.png"], "missing", _with_run
    ),
    "show filters --out under a file": Case(
        ["show", "filters", "digits", "--out", "afile/f.png"],
        "afile",
        lambda tmp, run: (_with_run(tmp, run), _a_file(tmp, run)),
    ),
    "show filters of a read-only run": Case(
        ["show", "filters", "digits"],
        "runs/digits/inspect: cannot write filters-features.0.png there (Read-only file system); "
        "give --out",
        _with_run,
        patch=_read_only_run,
    ),
    "show curves of a read-only run": Case(
        ["show", "curves", "digits"],
        "(Read-only file system); give --out",
        _with_run,
        (),
        _read_only_run,
    ),
    "show learned-filters of a read-only run": Case(
        ["show", "learned-filters", "digits"],
        "(Read-only file system); give --out",
        _with_run,
        patch=_read_only_run,
    ),
    "show featuremaps of a run whose inspect/ is a file": Case(
        ["show", "featuremaps", "digits", "test:0"],
        "runs/digits/inspect: cannot write featuremaps-test-0.png there",
        _inspect_is_a_file,
    ),
    "show cam --out not a png": Case(
        ["show", "cam", "digits", "test:0", "--out", "cam.jpg"], "cam.jpg", _with_run
    ),
    "show gradflow --out into a missing folder": Case(
        ["show", "gradflow", "lenet5", "--dataset", "digits", "--out", "missing/g.png"], "missing"
    ),
    "show gradflow --lr -1": Case(
        ["show", "gradflow", "lenet5", "--dataset", "digits", "--lr", "-1"], "--lr -1.0: expected"
    ),
    "show gradflow --lr inf": Case(
        ["show", "gradflow", "lenet5", "--dataset", "digits", "--lr", "inf"], "--lr inf: expected"
    ),
    "show gradflow --adam-eps nan": Case(
        [
            "show",
            "gradflow",
            "lenet5",
            "--dataset",
            "digits",
            "--optimizer",
            "adam",
            "--adam-eps",
            "nan",
        ],
        "--adam-eps nan: expected a small positive number",
    ),  # fmt: skip
    "show gradflow init= not a scheme": Case(
        ["show", "gradflow", "lenet5:init=he", "--dataset", "digits"], "init=he is not an"
    ),
    "graph show --out into a missing folder": Case(
        ["graph", "show", "--out", "missing/karate.png"], "missing"
    ),
    "reproduce --out into a missing folder": Case(
        ["reproduce", "--quick", "--out", "missing/table.md"], "missing"
    ),
}


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_refused_in_one_line_and_nothing_changes(
    case: Case, digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    if case.setup:
        case.setup(tmp_path, digits_run)
    if case.patch:
        case.patch(monkeypatch, tmp_path)
    before = _fingerprint(tmp_path)
    capsys.readouterr()
    try:
        code = main(case.argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "error:" in lines[0] and case.names in lines[0], lines[0]
    assert "Traceback" not in err
    assert _fingerprint(tmp_path) == before
    assert not (tmp_path / "CODE_RAN").exists()


def test_a_read_only_runs_dir_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """root may write anywhere by its permission bits, so the check tries a real write; here
    that write is made to fail as a read-only mount fails it."""
    import tempfile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    before = _fingerprint(tmp_path)
    assert main([*TRAIN, "--runs-dir", "ro/runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ro/runs'" in err and "Read-only file system" in err
    assert _fingerprint(tmp_path) == before


def test_serve_on_a_port_in_use_is_one_line(tmp_path, monkeypatch, capsys):
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"port {port} on 127.0.0.1 is already in use" in err


@pytest.mark.parametrize("layers", ["conv(6,1000000000)", "pool(2,s=1000000000)"])
def test_shapes_with_a_huge_kernel_or_stride_answers_with_its_problem(layers, capsys):
    """These used to hang (the fix search stepped one unit of kernel or stride at a time); a
    layer that does not fit is a problem in the table (exit 1), like any other misfit."""
    assert main(["shapes", layers, "--input", "1x28x28"]) == 1
    out = capsys.readouterr().out
    assert "1000000000" in out and "Fix" in out
