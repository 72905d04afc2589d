"""One process-wide lock between ``torch.fx`` tracing and model calls.

While ``torch.fx.Tracer.trace`` runs, it swaps ``torch.nn.Module.__call__`` (and
``__getattr__``) for its own recording wrappers in the whole process, not just in the tracing
thread: a model called from another thread at that moment runs through the tracer and fails
(the explorer answered 1% of its requests with 500 under load), and two traces at once can
restore each other's wrapper for good. So tracing is exclusive, and code that calls models
from several threads (the explorer) announces each call:

    with model_call():     # any number of threads at once, never during a trace
        model(x)

    with tracing():        # alone: waits for running model calls, holds back new ones
        torch.fx.Tracer().trace(model)

A waiting trace goes before model calls that arrive after it, so a busy server cannot starve
it. Both are reentrant within one thread (a model call inside a trace, or nested calls, never
deadlock).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class _TraceLock:
    def __init__(self) -> None:
        self._state = threading.Condition()
        self._calls = 0  # model calls running now, counted once per thread
        self._tracer: int | None = None  # ident of the thread tracing now
        self._tracers_waiting = 0
        self._mine = threading.local()  # this thread's model-call depth

    @contextlib.contextmanager
    def model_call(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        if depth or self._tracer == threading.get_ident():
            self._mine.depth = depth + 1
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        with self._state:
            while self._tracer is not None or self._tracers_waiting:
                self._state.wait()
            self._calls += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._state:
                self._calls -= 1
                if not self._calls:
                    self._state.notify_all()

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._tracer == me:
            yield
            return
        if getattr(self._mine, "depth", 0):
            raise RuntimeError("torch.fx tracing inside a model_call() would wait for itself")
        with self._state:
            self._tracers_waiting += 1
            try:
                while self._tracer is not None or self._calls:
                    self._state.wait()
            finally:
                self._tracers_waiting -= 1
            self._tracer = me
        try:
            yield
        finally:
            with self._state:
                self._tracer = None
                self._state.notify_all()


_LOCK = _TraceLock()


def model_call() -> contextlib.AbstractContextManager[None]:
    """Hold while calling a model (forward, backward, hooks) from a thread that may run beside
    a ``torch.fx`` trace."""
    return _LOCK.model_call()


def tracing() -> contextlib.AbstractContextManager[None]:
    """Hold while ``torch.fx`` traces: no model call runs in any thread meanwhile."""
    return _LOCK.tracing()
