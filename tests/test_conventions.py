"""Conventions a PyTorch user expects of a command-line tool and a library: ``--version``, progress
bars only on a terminal, and ``fit`` reporting through ``logging`` so a notebook can silence it."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
import torch

from cnnlab import __version__
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.outputs import LOGGER, STDERR_HANDLER, progress_bars_shown
from cnnlab.train import TrainConfig, fit


def test_version_names_cnnlab_torch_and_python(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cnnlab {__version__} (torch ")
    assert torch.__version__.split("+")[0] in out
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}." in out


def test_version_of_the_installed_command():
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("cnnlab "), done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal():
    assert progress_bars_shown(True, _Terminal())
    assert not progress_bars_shown(True, io.StringIO())  # a log file, a pipe
    assert not progress_bars_shown(False, _Terminal())  # --no-progress wins
    closed = io.StringIO()
    closed.close()
    assert not progress_bars_shown(True, closed)


@pytest.fixture()
def quiet_logger():
    """The ``cnnlab`` logger as importing cnnlab leaves it, restored afterwards (pytest's
    own capture handlers taken off for the test)."""
    saved = (list(LOGGER.handlers), LOGGER.level, LOGGER.propagate)
    LOGGER.handlers[:] = [STDERR_HANDLER]
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    yield LOGGER
    LOGGER.handlers[:] = saved[0]
    LOGGER.setLevel(saved[1])
    LOGGER.propagate = saved[2]


def _tiny_fit(verbose: bool, progress: bool = True, probe: bool = False):
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    config = TrainConfig(epochs=1, batch_size=256, progress=progress, probe=probe)
    model = create_model("lenet5", num_classes=10, in_channels=1, input_size=8)
    return fit(model, (train.subset(512), test.subset(128)), config, verbose=verbose)


def test_fit_reports_epochs_on_stderr_without_bar_frames_when_not_a_terminal(quiet_logger, capsys):
    _tiny_fit(verbose=True, progress=True)  # stderr is captured: not a terminal
    captured = capsys.readouterr()
    assert "epoch   1/1  train loss" in captured.err
    assert "\r" not in captured.err  # no tqdm frames in a log
    assert captured.out == ""


def test_fit_verbose_false_prints_nothing_and_logs_at_debug(quiet_logger, capsys, caplog):
    _tiny_fit(verbose=False, probe=True)  # the probe's choice is quiet too
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    with caplog.at_level(logging.DEBUG, logger="cnnlab"):
        quiet_logger.propagate = True  # let caplog see the records
        _tiny_fit(verbose=False)
    records = [r for r in caplog.records if "train loss" in r.getMessage()]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    quiet_logger.propagate = False
    _tiny_fit(verbose=True, probe=True)
    assert "probe:" in capsys.readouterr().err  # shown when the epochs are


def test_fit_lines_go_to_a_handler_the_user_set(quiet_logger, capsys):
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    quiet_logger.handlers = [Collect()]  # the documented way to send the lines elsewhere
    _tiny_fit(verbose=True)
    assert any(line.startswith("epoch   1/1") for line in lines)
    assert "train loss" not in capsys.readouterr().err  # the user's handler only
    quiet_logger.handlers = [STDERR_HANDLER]
    quiet_logger.setLevel(logging.WARNING)  # the documented way to silence it
    _tiny_fit(verbose=True)
    assert "train loss" not in capsys.readouterr().err


def test_every_torchrun_of_the_suite_has_a_port_of_its_own():
    """./test runs tests side by side (pytest-xdist): two torchruns on one master port make
    one of them fail at random."""
    import re
    from pathlib import Path

    ports: dict[str, str] = {}
    pattern = re.compile(r"master_port=(\d{4,5})|_torchrun\(\d+, (\d{4,5})")
    for path in sorted(Path(__file__).parent.rglob("test_*.py")):
        for match in pattern.finditer(path.read_text()):
            port = match.group(1) or match.group(2)
            assert port not in ports, f"port {port}: {path.name} and {ports[port]}"
            ports[port] = path.name
    assert len(ports) >= 6
