"""Record the explorer's answers to a fixed list of requests, to compare two revisions.

    PYTHONPATH=<a revision's working copy> python tools/explorer_record.py OUT.json [--run DIR]
    python tools/explorer_record.py --diff OLD.json NEW.json

The app is built in-process (as ``cnnlab serve`` builds it) over two sources: an untrained
``lenet5`` (seed 0) and a run trained here by ``cnnlab train`` (LeNet-5, 1 epoch, 500 MNIST
images, seed 0; ``--run`` serves a given run folder instead, to compare the explorers alone on
the same weights). Data: ``$CNNLAB_DATA``. OUT is canonical JSON, {request: answer}: floats to 6
significant digits, PNGs as the sha256 of their decoded pixels, other bodies as their sha256,
temporary paths as ``<TMP>``, volatile keys (times, dates) as ``<volatile>``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

RUN = "rec"  # the trained run's folder name
VOLATILE = {"seconds", "epoch_seconds", "time", "elapsed", "created", "date", "timestamp"}
STATIC = "app.js compare.js contrib.js docs.css docs.html docs.js explain.js graph.js index.html"
STATIC += " maps.js numbers.js practice.js running.js state.js style.css favicon.svg"  # old static/
# (layer, channel) for contributions, gradient and kernel: a conv, a conv, an activation, a pool
LAYERS = [("features.3", 5), ("features.0", 1), ("features.1", 1), ("features.5", 1)]
WHERE = [("features.0", 2, 5, 7), ("features.1", 2, 5, 7), ("features.2", 3, 4, 1)]  # explain
WHERE += [("features.3", 5, 2, 3), ("features.5", 9, 1, 2), ("features.6", 17, 0, 0)]
WHERE += [("classifier.0", 37, 0, 0), ("classifier.1", 11, 0, 0), ("classifier.3", 4, 0, 0)]
WHERE += [("softmax", 4, 0, 0), ("fit", 0, 3, 3), ("features.99", 0, 0, 0)]
WHERE += [("features.0", 2, 50, 50)]  # out of range


def pixel_hash(data: bytes) -> dict[str, Any]:
    """A PNG (or other picture) as its mode, size and the sha256 of its decoded pixels."""
    image = Image.open(io.BytesIO(data))
    image.load()
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.sha256(array.tobytes()).hexdigest()
    return {"image": image.mode, "size": list(image.size), "pixels_sha256": digest}


def canon(value: Any, tmp: str, key: str = "") -> Any:
    """``value`` with floats rounded, PNG data URLs hashed and volatile parts replaced."""
    if key in VOLATILE:
        return "<volatile>"
    if isinstance(value, dict):
        return {k: canon(v, tmp, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [canon(v, tmp) for v in value]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return float(f"{value:.6g}") + 0.0  # + 0.0: -0.0 is 0.0
    if isinstance(value, str):
        if value.startswith("data:image/") and ";base64," in value:
            return pixel_hash(base64.b64decode(value.split(",", 1)[1]))
        return value.replace(tmp, "<TMP>").replace(os.path.realpath(tmp), "<TMP>")
    return value


def answer(response: Any, tmp: str) -> dict[str, Any]:
    kind = response.headers.get("content-type", "").split(";")[0]
    out: dict[str, Any] = {"status": response.status_code, "type": kind}
    if kind == "application/json":
        out["json"] = canon(response.json(), tmp)
    elif kind.startswith("image/") and kind != "image/svg+xml":
        out["body"] = pixel_hash(response.content)
    else:
        out["body_sha256"] = hashlib.sha256(response.content).hexdigest()
    return out


def train(runs_dir: Path, data: str) -> Path:
    """LeNet-5 on 500 MNIST images, 1 epoch, by the CLI of the revision on sys.path."""
    command = [sys.executable, "-m", "cnnlab", "train", "--model", "lenet5", "--dataset", "mnist"]
    command += ["--data-dir", data, "--train-subset", "500", "--test-subset", "200"]
    command += ["--epochs", "1", "--batch-size", "64", "--lr", "0.003", "--seed", "0"]
    command += ["--name", RUN, "--runs-dir", str(runs_dir), "--no-progress"]
    subprocess.run(command, check=True, cwd=runs_dir, stdout=subprocess.DEVNULL)
    return runs_dir / RUN


def png(mode: str) -> bytes:
    """A fixed picture: a bright ring on a dark background (RGBA: half of it transparent)."""
    y, x = np.mgrid[0:40, 0:56]
    ring = (np.abs(np.hypot(y - 20, x - 28) - 12) < 3).astype(np.uint8) * 220 + 20
    channels = {"L": [ring], "RGB": [ring, ring[::-1], 255 - ring]}
    channels["RGBA"] = channels["RGB"] + [np.where(x < 28, 255, 0).astype(np.uint8)]
    buffer = io.BytesIO()
    Image.fromarray(np.stack(channels[mode], -1).squeeze()).save(buffer, "PNG")
    return buffer.getvalue()


def at(layer: str, channel: int | None = None, **more: Any) -> dict[str, Any]:
    return {"layer": layer, **({} if channel is None else {"channel": channel}), **more}


def requests(client: Any, name: str) -> dict[str, Any]:
    """Every endpoint of the old revision on one source: (method path, body) -> response."""
    api = f"/api/runs/{name}"
    done: dict[str, Any] = {}
    for index in (0, 7, 99999):
        done[f"GET {api}/sample/{index}"] = client.get(f"{api}/sample/{index}")
    done[f"GET {api}/summary"] = client.get(f"{api}/summary")
    done[f"GET {api}/report"] = client.get(f"{api}/report")
    for mode, fit in (("L", None), ("RGB", "squash"), ("RGBA", None), ("RGB", "form:squash")):
        files = {"file": (f"ring-{mode}.png", png(mode), "image/png")}
        form = {"fit": fit[5:]} if fit and fit.startswith("form:") else None
        params = {"fit": fit} if fit and not form else None
        key = f"POST {api}/upload {mode} fit={fit}"
        done[key] = client.post(f"{api}/upload", files=files, params=params, data=form)
    bad = {"file": ("notes.txt", b"not a picture", "text/plain")}
    done[f"POST {api}/upload text"] = client.post(f"{api}/upload", files=bad)
    got = done[f"GET {api}/sample/7"]  # a model has no test images: the uploaded ring
    image = (got if got.status_code == 200 else done[f"POST {api}/upload L fit=None"]).json()
    image = image["pixels"]
    posts: list[tuple[str, dict[str, Any]]] = [("analyze", {}), ("analyze", {"channels": 3})]
    posts += [("cam", {}), ("cam", at("features.3", class_index=3, colormap="jet"))]
    posts += [("contributions", at(layer, c, limit=4)) for layer, c in LAYERS[:3]]
    posts += [("gradient", at(layer, c, class_index=3)) for layer, c in LAYERS]
    posts += [("gradient", at("features.0", 4)), ("gradient", at("classifier.1", 0))]
    posts += [("kernel", at(layer, c, y=2, x=3)) for layer, c in LAYERS[:3]]
    for layer, channel, y, x in WHERE:
        posts.append(("explain", at(layer, channel, y=y, x=x)))
    for endpoint, body in posts:
        key = f"POST {api}/{endpoint} {json.dumps(body, sort_keys=True)}"
        done[key] = client.post(f"{api}/{endpoint}", json={"pixels": image, **body})
    done[f"POST {api}/analyze pixels=[[1]]"] = client.post(f"{api}/analyze", json={"pixels": [[1]]})
    return done


def record(out: Path, run: str | None) -> None:
    import torch
    from fastapi.testclient import TestClient

    import cnnlab
    from cnnlab.explorer import create_app

    print(f"cnnlab from {Path(cnnlab.__file__).parent}", file=sys.stderr)
    data = os.environ["CNNLAB_DATA"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # decoded-data cache
        source = Path(run) if run else train(Path(tmp), data)
        torch.manual_seed(0)
        app = create_app([source, "lenet5"], data, seed=0)
        client = TestClient(app, raise_server_exceptions=False)
        done: dict[str, Any] = {"GET /api/runs": client.get("/api/runs")}
        done["GET /api/presets"] = client.get("/api/presets")
        sizes = [{}, {"n": 32, "kernel": 3, "stride": 2, "padding": 1, "in_channels": 3}]
        sizes += [{"n": 5, "kernel": 7}, {"n": 224, "kernel": 11, "stride": 4, "dilation": 2}]
        for query in sizes:
            key = f"GET /api/arithmetic {json.dumps(query, sort_keys=True)}"
            done[key] = client.get("/api/arithmetic", params=query)
        for path in ["/", "/docs", "/favicon.ico", "/openapi.json", "/api/runs/nothing/summary"]:
            done[f"GET {path}"] = client.get(path)
        for name in STATIC.split():
            done[f"GET /static/{name}"] = client.get(f"/static/{name}")
        for name in (source.name, "lenet5"):
            done.update(requests(client, name))
        tmp_text = str(source.parent) if run else tmp
        recorded = {key: answer(response, tmp_text) for key, response in done.items()}
    out.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"{len(recorded)} requests recorded in {out}", file=sys.stderr)


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every scalar of a nested answer by its path, e.g. ``.json.layers[3].max``."""
    if not isinstance(value, (dict, list)):
        return {path: value}
    out: dict[str, Any] = {}
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        out.update(leaves(item, f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"))
    return out


def diff(old_file: Path, new_file: Path) -> int:
    """Identical and differing requests; for each difference its first differing fields."""
    old, new = json.loads(old_file.read_text()), json.loads(new_file.read_text())
    same = [key for key in old if key in new and old[key] == new[key]]
    print(f"identical: {len(same)}, differing: {len(old) - len(same)} of {len(old)} (old)")
    for key in old:
        if key not in new:
            print(f"- only in old: {key}")
        elif old[key] != new[key]:
            a, b = leaves(old[key]), leaves(new[key])
            fields = [p for p in {**a, **b} if a.get(p, "<absent>") != b.get(p, "<absent>")]
            added = sum(p not in a for p in fields)
            print(f"- {key}: {len(fields)} fields ({added} only in new)")
            for field in fields[:6]:
                print(f"    {field}: {a.get(field, '<absent>')!r} -> {b.get(field, '<absent>')!r}")
    for key in new.keys() - old.keys():
        print(f"- only in new: {key}")
    return 0 if len(same) == len(old) == len(new) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="the JSON file to write")
    parser.add_argument("--run", help="serve this run folder instead of training one")
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.diff:
        return diff(*args.diff)
    if args.out is None:
        parser.error("OUT is required (or --diff OLD NEW)")
    record(args.out, args.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
