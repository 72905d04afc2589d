"""Reading pickled data files (CIFAR-10 batches, Planetoid graphs) without running code from them.

A pickle names the functions that rebuild its objects, and plain ``pickle.load`` calls whatever
it names (``os.system`` included). :class:`RestrictedUnpickler` resolves only the names on an
allow-list and refuses everything else before anything is called.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any, ClassVar

from numpy._core.multiarray import _reconstruct

# How numpy's arrays rebuild themselves: ``_reconstruct(ndarray, (0,), b"b")`` then
# ``__setstate__``; old pickles spell the module numpy.core, numpy 2 spells it numpy._core.
NUMPY_RECONSTRUCT = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the ``(module, name)`` pairs in ``ALLOWED`` (plus numpy's
    array reconstructor); any other global is an :class:`pickle.UnpicklingError`."""

    ALLOWED: ClassVar[Mapping[tuple[str, str], Any]] = {}

    def __init__(
        self, file: Any, *, allowed: Mapping[tuple[str, str], Any] | None = None, **options: Any
    ) -> None:
        super().__init__(file, **options)
        self.allowed = self.ALLOWED if allowed is None else allowed

    def find_class(self, module: str, name: str) -> Any:
        found = NUMPY_RECONSTRUCT.get((module, name)) or self.allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return found


def restricted_loads(
    data: bytes, allowed: Mapping[tuple[str, str], Any], encoding: str = "latin1"
) -> Any:
    """Unpickle ``data`` resolving only ``allowed`` globals (and numpy's array reconstructor).

    ``encoding="latin1"`` reads Python 2 pickles (their ``str`` holds raw bytes)."""
    return RestrictedUnpickler(io.BytesIO(data), allowed=allowed, encoding=encoding).load()
