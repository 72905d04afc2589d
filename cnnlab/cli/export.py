"""``cnnlab export``: a trained run as a file other tools run (ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import DefaultsFormatter, add_run_options


def add_export(sub: argparse._SubParsersAction) -> None:
    from ..export import FORMATS, ONNX_FILE

    p = sub.add_parser(
        "export",
        help="write a trained run's model as ONNX",
        description="Export a run's model with a dynamic batch axis. The file takes the "
        "preprocessed float32 N x C x H x W batch and returns logits; the run's preprocessing "
        "(scaling, mean, std, input size and channels) and class names are in its metadata.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="file format")
    p.add_argument("--out", default=None, help=f"output file (default: RUN/{ONNX_FILE})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_run_options(p)
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from ..export import export_onnx

    result = export_onnx(args.run, args.out, args.overwrite, Path(args.runs_dir))
    meta = result.metadata
    size = f"{meta['input_channels']}x{meta['input_size']}x{meta['input_size']}"
    print(f"wrote {result.path} ({result.bytes / 2**20:.2f} MiB, ONNX)")
    print(f"  input  {meta['input_name']!r}: float32 N x {size}, {meta['preprocessing']}")
    print(f"         mean {meta['mean']}  std {meta['std']}  ({meta['input_scaling']} scaling)")
    print(f"  output {meta['output_name']!r}: N x {meta['num_classes']} logits")
    print("  all of it is in the file's metadata_props (onnx.load(path).metadata_props)")
    return 0
