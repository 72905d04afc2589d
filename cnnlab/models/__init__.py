"""Model registry and the models that ship with cnnlab.

>>> from cnnlab.models import create_model, list_models
>>> model = create_model("lenet5", num_classes=10, in_channels=1, input_size=28, modern=True)
"""

from . import cifar_stacks, classic, lenet, reference, tv  # noqa: F401  (importing registers the models)
from ._registry import create_model, get_model_entry, list_models, register_model

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
