"""``cnnlab serve``: the explorer, trained runs (and any model) in the browser."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from ..errors import CnnlabError
from ._options import add_data_options, add_run_options


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="open trained runs (or any model) in the browser (the cnnlab explorer)",
        description="Start the explorer on 127.0.0.1: draw or upload an image, see the "
        "prediction, every layer's feature maps, the arithmetic of any output value, its "
        "gradient, Grad-CAM, the layer table and a run's report; /docs describes its JSON API. "
        "RUN: run folders (default: every run under --runs-dir) or models: a name from `cnnlab "
        "models` (untrained, seeded), torchvision:NAME (untrained, or --weights) or "
        "package.module:callable; a run folder of the same name as a model is served as the "
        "run. Runs it cannot show (graph runs) are skipped with a notice.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN")
    add_run_options(p)
    p.add_argument("--seed", type=int, default=0, help="random weights of an untrained model")
    p.add_argument(
        "--weights",
        action="store_true",
        help="torchvision:NAME with its ImageNet weights (the torch cache; downloaded if missing)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        help="1-65535, or 0 for any free port (the address is printed)",
    )
    add_data_options(p, "for test-set samples")
    p.set_defaults(handler=_serve)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, so a port in use (or a host that is not
    this machine's) is one line here instead of uvicorn's text and exit code 3."""
    if not 0 <= port <= 65535:
        raise CnnlabError(f"--port {port}: expected 1-65535 (or 0 for any free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError) as error:
        sock.close()
        if isinstance(error, (socket.gaierror, UnicodeError)):
            why = (
                f"--host {host!r}: not a host name or address of this machine; the "
                "explorer is meant for 127.0.0.1 (the default)"
            )
        elif error.errno == errno.EADDRINUSE:
            other = port + 1 if port < 65535 else 8000
            why = (
                f"--port {port}: port {port} on {host} is already in use (another server?); "
                f"stop that server or pick another, e.g. --port {other}, or --port 0 for any "
                "free port"
            )
        elif error.errno == errno.EACCES:
            why = f"--port {port}: not allowed to listen on it here; use a port above 1023"
        else:
            why = f"--host {host} --port {port}: cannot listen there ({error.strerror})"
        raise CnnlabError(why) from None
    return sock


def serve_sources(given: list[str], runs_dir: Path) -> list[Path | str]:
    """Run folders as paths, model names as text, by :func:`cnnlab.runs.sources.which` (an
    existing run folder wins a name; a note says so)."""
    from ..models import names_a_model
    from ..run_folder import list_runs
    from ..runs.sources import which

    if not given:
        return list(list_runs([], runs_dir))
    out: list[Path | str] = []
    for text in given:
        meant = which(text, runs_dir)
        if meant.note:
            print(f"note: {meant.note}")
        out.append(
            text if names_a_model(text) and not meant.is_run else list_runs([text], runs_dir)[0]
        )
    return out


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..explorer import create_app

    sock = _listening_socket(args.host, args.port)  # first: nothing else is done for a bad one
    try:
        sources = serve_sources(args.runs, Path(args.runs_dir))
        app = create_app(sources, args.data_dir, args.seed, args.weights)
        for line in app.state.skipped:
            print(f"skipping run {line}")
        for note in app.state.notes:
            print(f"note: {note}")
        if args.host not in ("127.0.0.1", "localhost"):
            print(f"warning: serving on {args.host}: other machines can reach this server")
        host, port = sock.getsockname()[:2]
        print(f"cnnlab explorer: http://{args.host}:{port}/  (API: /docs; Ctrl+C stops it)")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
