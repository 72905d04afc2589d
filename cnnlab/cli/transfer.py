"""``cnnlab transfer``: train a pretrained network on a new data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_data_options, add_run_options


def add_transfer(sub: argparse._SubParsersAction) -> None:
    from ..train.config import AMP_MODES

    p = sub.add_parser(
        "transfer",
        help="train a pretrained network on a new data set",
        description="Replace the source network's head and train on --dataset with a transfer "
        "strategy: feature-extract (only the head learns), fine-tune-last:K (the last K blocks "
        "too), full (everything, the pretrained layers at --backbone-lr-factor x lr), or auto "
        "(the four-quadrant rule; say --different if the data is unlike the source's). Every "
        "option is checked before the source or the data is loaded.",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        help="a run folder, or torchvision:NAME for ImageNet weights",
    )
    p.add_argument("--dataset", required=True)
    p.add_argument(
        "--strategy",
        default="auto",
        help="feature-extract, fine-tune-last:K, full or auto (default). auto follows the "
        "four-quadrant rule of the course material: small and similar -> feature-extract; small "
        "and different -> fine-tune-last:1; large and similar -> retrain the later conv layers "
        "and the classifier (fine-tune-last:K: the later half of the source's convolution "
        "blocks and every block after them); large and different -> full. Small: under 1,000 "
        "images per class",
    )
    p.add_argument("--different", action="store_true", help="target unlike the source (auto)")
    p.add_argument(
        "--backbone-lr-factor",
        type=float,
        default=None,
        metavar="F",
        help="--strategy full: the pretrained layers train at F x --lr, 0 < F <= 1 (default "
        "0.1); to keep them fixed use feature-extract or fine-tune-last:K instead of F=0",
    )
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--data-variant", default=None)
    add_data_options(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="random crops (pad 2 at 28/32 px) and, on photos, horizontal flips, as train does",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="none", choices=AMP_MODES, help="autocast precision")
    add_run_options(p)
    p.add_argument("--name", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_transfer)


def _transfer(args: argparse.Namespace) -> int:
    from ..run_folder import plan_run_dir
    from ..runs.start import load_pretrained, transfer_run
    from ..train.config import TrainConfig
    from ..train.pipeline import load_data
    from ..train.transfer import Strategy, advise, backbone_blocks, check_backbone_lr_factor

    # every option first: nothing is loaded, trained or written for a run that cannot start
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        data_variant=args.data_variant,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
        augment=args.augment,
        device=args.device,
        amp=args.amp,
    )
    given_factor = args.backbone_lr_factor is not None
    factor = check_backbone_lr_factor(args.backbone_lr_factor if given_factor else 0.1)
    strategy = args.strategy
    if strategy != "auto":
        Strategy.parse(strategy)
    plan_run_dir(Path(args.runs_dir), args.name, "transfer", args.overwrite)  # creates nothing
    if strategy == "auto":
        train, _ = load_data(config)
        source_model, _ = load_pretrained(args.source, Path(args.runs_dir))  # to count its blocks
        blocks = backbone_blocks(source_model)
        chosen, why = advise(len(train), train.num_classes, not args.different, blocks)
        strategy = str(chosen)
        print(f"strategy {strategy}: {why}")
    if given_factor and Strategy.parse(strategy).kind != "full":
        print(
            f"note: --backbone-lr-factor applies to --strategy full only; {strategy} trains "
            "its unfrozen layers at --lr"
        )
    result, report = transfer_run(
        args.source, config, strategy, factor, Path(args.runs_dir), args.name, args.overwrite
    )
    trained = ", ".join(report["trained_blocks"]) or "none"
    print(
        f"{report['strategy']}: training {report['trainable_params']:,} of "
        f"{report['total_params']:,} parameters (new head {report['head']}; backbone blocks "
        f"trained: {trained})"
    )
    print(f"test accuracy: {result.history[-1]['test_acc']:.2%}")
    print(f"run folder: {result.run_dir}")
    return 0
