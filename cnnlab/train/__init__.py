"""Training: ``fit(model, data, config)`` and everything it is built from, one module each.

- :mod:`.loop`: ``fit``, the loop, read top to bottom;
- :mod:`.setup`: what the loop is built from (optimizer, schedule, loaders, checkpoints);
- :mod:`.config`: ``TrainConfig``, every setting declared once (default, check, flag, help),
  ``TrainingHooks``; :mod:`.options`: how a setting is declared; :mod:`.config_file`:
  ``--config FILE``; :mod:`.checks`: the checks that need the machine, the data or the model;
- :mod:`.steps`: one epoch's optimizer steps, evaluation, the NaN stop, Lookahead, the
  weight average (``--ema``);
- :mod:`.pipeline`: the data a config names and the training loader;
- :mod:`.validation`: ``--val-split`` and ``--keep best``;
- :mod:`.distributed`: devices, ranks, seeds (``torchrun``);
- :mod:`.recipes`: named presets (``--recipe``); :mod:`.probe`: ``--probe``;
- :mod:`.transfer`: transfer learning's strategies; :mod:`.tensorboard`: event files.

The names below are the public API (``from cnnlab.train import TrainConfig, fit``); inside
cnnlab every name is imported from its own module.
"""

from ..data.batches import INPUT_SCALINGS
from .checks import check_batch_size, check_model_input, check_runtime, check_test_flip
from .config import (
    AMP_MODES,
    AUGMENT_STYLES,
    LR_MAX,
    MAX_IMAGE_SIDE,
    OPTIMIZERS,
    SCHEDULES,
    SEED_MAX,
    TrainConfig,
    TrainingHooks,
)
from .distributed import (
    Distributed,
    current_distributed,
    init_distributed,
    parse_device,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from .loop import fit
from .options import is_count, is_real_in, option
from .pipeline import alexnet_augmentation, crop_padding_for
from .setup import (
    STEPS_CSV,
    FitResult,
    draw_run_figures,
    lr_factor,
    make_optimizer,
    model_spec,
    standard_hooks,
)
from .steps import StepEvaluation, TrainingDiverged, autocast, diverged, evaluate, training_loss

__all__ = [
    "AMP_MODES",
    "AUGMENT_STYLES",
    "INPUT_SCALINGS",
    "LR_MAX",
    "MAX_IMAGE_SIDE",
    "OPTIMIZERS",
    "SCHEDULES",
    "SEED_MAX",
    "STEPS_CSV",
    "Distributed",
    "FitResult",
    "StepEvaluation",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingHooks",
    "alexnet_augmentation",
    "autocast",
    "check_batch_size",
    "check_model_input",
    "check_runtime",
    "check_test_flip",
    "crop_padding_for",
    "current_distributed",
    "diverged",
    "draw_run_figures",
    "evaluate",
    "fit",
    "init_distributed",
    "is_count",
    "is_real_in",
    "lr_factor",
    "option",
    "make_optimizer",
    "model_spec",
    "parse_device",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "standard_hooks",
    "training_loss",
]
