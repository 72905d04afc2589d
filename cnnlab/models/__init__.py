"""Model registry and the models that ship with cnnlab.

>>> from cnnlab.models import create_model, list_models
>>> model = create_model("lenet5", num_classes=10, in_channels=1, input_size=28, modern=True)
"""

from . import (  # noqa: F401  (importing registers the models)
    airbench,  # noqa: F401  (cifar_air: airbench94 for CPUs)
    blocks,  # noqa: F401  (inception_small, resnet_blocks: lessons' blocks)
    cifar_four,  # noqa: F401  (AlexNet's Figure-1 network)
    cifar_stacks,
    classic,
    fast,
    lenet,
    reference,
    tv_models,
)
from ._registry import create_model, fix_parameter, get_model_entry, list_models, register_model
from ._resolve import (
    ResolvedModel,
    check_num_classes,
    check_run_input,
    names_a_model,
    resolve_model,
)

__all__ = [
    "ResolvedModel",
    "check_num_classes",
    "check_run_input",
    "create_model",
    "fix_parameter",
    "get_model_entry",
    "list_models",
    "names_a_model",
    "register_model",
    "resolve_model",
]
