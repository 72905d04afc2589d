"""``cnnlab serve``: the explorer, trained runs in the browser."""

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
        help="open trained runs in the browser (the cnnlab explorer)",
        description="Start the explorer on 127.0.0.1: draw or upload an image, see the "
        "prediction, every layer's feature maps, the arithmetic of any output pixel, Grad-CAM "
        "and the layer table; /docs describes its JSON API. RUN: run folders (default: every "
        "run under --runs-dir); runs it cannot show (graph runs) are skipped with a notice.",
    )
    p.add_argument("runs", nargs="*")
    add_run_options(p)
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..explorer import create_app
    from ..runs import list_runs

    sock = _listening_socket(args.host, args.port)  # first: nothing else is done for a bad one
    try:
        app = create_app(list_runs(args.runs, Path(args.runs_dir)), args.data_dir)
        for line in app.state.skipped:
            print(f"skipping run {line}")
        if args.host not in ("127.0.0.1", "localhost"):
            print(f"warning: serving on {args.host}: other machines can reach this server")
        host, port = sock.getsockname()[:2]
        print(f"cnnlab explorer: http://{args.host}:{port}/  (API: /docs; Ctrl+C stops it)")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
