"""`cnnlab serve` on the command line: which runs it serves, its port checks, and a real
server process started and stopped (on 127.0.0.1 only)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.explorer import create_app
from cnnlab.run_folder import list_runs as serve_runs


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory, data_dir) -> Path:
    """A real GCN run (Zachary's karate club), as `cnnlab graph train` writes it."""
    root = tmp_path_factory.mktemp("graph-runs")
    argv = [
        "graph",
        "train",
        "--dataset",
        "karate",
        "--epochs",
        "20",
        "--no-progress",
        "--runs-dir",
        str(root),
        "--data-dir",
        str(data_dir),
    ]
    assert main(argv) == 0
    return root / "gcn-karate"


def test_a_graph_run_among_the_runs_is_skipped_with_a_notice(runs_root, graph_run):
    app = create_app([runs_root / "lenet", graph_run])
    listed = TestClient(app, raise_server_exceptions=False).get("/api/runs")
    assert listed.status_code == 200, listed.text
    assert [r["name"] for r in listed.json()] == ["lenet"]
    assert app.state.skipped == [
        f"gcn-karate: a graph (GCN) run; the explorer shows image classifiers only; "
        f"`cnnlab graph show {graph_run}` draws it"
    ]
    with pytest.raises(CnnlabError, match=r"none of the 1 run\(s\) can be shown \(gcn-karate"):
        create_app([graph_run])


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cnnlab serve: error: ")
    return lines[0]


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(port, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--port", port]) == 2
    line = _one_error_line(capsys)
    assert f"--port {port}:" in line and "1-65535" in line
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:  # another server on 127.0.0.1
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    line = _one_error_line(capsys)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port 0" in line
    assert list(tmp_path.iterdir()) == []


def test_serve_looks_for_checkpoints_by_the_run_folder_names(runs_root, graph_run, tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    for run in (runs_root / "lenet", graph_run):
        (folder / run.name).symlink_to(run, target_is_directory=True)
    (folder / "notes").mkdir()  # no checkpoint: not a run
    (folder / "notes" / run_folder.CONFIG).write_text("{")  # and a broken config.json is not read
    assert serve_runs([], folder) == [folder / "gcn-karate", folder / "lenet"]
    assert serve_runs(["lenet"], folder) == [folder / "lenet"]


def test_a_run_folder_named_like_a_model_is_served_as_the_run(runs_root, tmp_path):
    from cnnlab.cli.serve import serve_sources

    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "lenet5").symlink_to(runs_root / "lenet", target_is_directory=True)
    assert serve_sources(["lenet5", "resnet18"], folder) == [folder / "lenet5", "resnet18"]
    assert serve_sources(["torchvision:alexnet"], folder) == ["torchvision:alexnet"]
    app = create_app(serve_sources(["lenet5"], folder))
    listed = TestClient(app).get("/api/runs").json()
    assert [(r["name"], r["source"], r["model"]) for r in listed] == [("lenet5", "run", "lenet5")]


def test_serve_skips_a_graph_run_and_serves_a_model_beside_a_run(runs_root, graph_run, data_dir):
    """A real `cnnlab serve` process on any free port (--port 0) for a run, a graph run and an
    untrained registered model (resnet18): it names the run it skips and the model's notes,
    prints its address and answers the API for both; it is stopped at the end whatever
    happens."""
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "serve",
        str(runs_root / "lenet"),
        str(graph_run),
        "resnet18",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    watchdog = threading.Timer(180, server.kill)  # a hung server cannot hang the suite
    watchdog.start()
    try:
        printed = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            line = server.stdout.readline()
            printed.append(line)
            if line.startswith("cnnlab explorer: http://127.0.0.1:"):
                break
        assert printed[-1].startswith("cnnlab explorer: http://127.0.0.1:"), printed
        assert printed[0].startswith("skipping run gcn-karate: a graph (GCN) run"), printed
        url = printed[-1].split()[2].rstrip("/")
        assert not url.endswith(":0")
        assert any(line.startswith("note: resnet18: resnet18 is untrained") for line in printed)
        listed = httpx.get(f"{url}/api/runs", timeout=30)
        assert listed.status_code == 200
        assert [(r["name"], r["source"]) for r in listed.json()] == [
            ("lenet", "run"),
            ("resnet18", "model"),
        ]
        for run, shape in (("resnet18", (3, 224, 224)), ("lenet", (1, 28, 28))):
            body = {"pixels": np.full(shape, 128).tolist()}
            answer = httpx.post(f"{url}/api/runs/{run}/analyze", json=body, timeout=60)
            assert answer.status_code == 200, answer.text[:200]
        assert httpx.get(f"{url}/docs", timeout=30).status_code == 200
    finally:
        watchdog.cancel()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
