"""``cnnlab export``: a trained run as a file other tools run (ONNX, or safetensors weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import DefaultsFormatter, add_run_options


def add_export(sub: argparse._SubParsersAction) -> None:
    from ..runs.export import DEFAULT_FILES, FORMATS

    p = sub.add_parser(
        "export",
        help="write a trained run's model as ONNX, or its weights as safetensors",
        description="Export a run's model. ONNX: the graph with a dynamic batch axis; it takes "
        "the preprocessed float32 N x C x H x W batch and returns logits. safetensors: the "
        "weights alone (state_dict), no code. Either way the run's preprocessing (scaling, "
        "mean, std, input size and channels) and class names are in the file's metadata.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="file format")
    defaults = ", ".join(f"RUN/{name} for {kind}" for kind, name in DEFAULT_FILES.items())
    p.add_argument("--out", default=None, help=f"output file (default: {defaults})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_run_options(p)
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from ..runs.export import export_run

    result = export_run(args.run, args.format, args.out, args.overwrite, Path(args.runs_dir))
    meta = result.metadata
    size = f"{meta['input_channels']}x{meta['input_size']}x{meta['input_size']}"
    kind = "ONNX" if args.format == "onnx" else "safetensors, weights only"
    print(f"wrote {result.path} ({result.bytes / 2**20:.2f} MiB, {kind})")
    print(f"  input  {meta['input_name']!r}: float32 N x {size}, {meta['preprocessing']}")
    print(f"         mean {meta['mean']}  std {meta['std']}  ({meta['input_scaling']} scaling)")
    print(f"  output {meta['output_name']!r}: N x {meta['num_classes']} logits")
    if args.format == "onnx":
        print("  all of it is in the file's metadata_props (onnx.load(path).metadata_props)")
    else:
        print(
            f"  rebuild: cnnlab.models.create_model({meta['model']!r}, "
            f"num_classes={meta['num_classes']}, in_channels={meta['input_channels']}, "
            f"input_size={meta['input_size']}, **model_options), then "
            "load_state_dict(safetensors.torch.load_file(path)); the metadata is in "
            "safetensors.safe_open(path, 'pt').metadata()"
        )
    return 0
