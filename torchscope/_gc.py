"""One helper shared by the walks: pausing the cyclic garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a walk over a model.

    Allocating many small records while walking otherwise triggers full collections over the
    model's many objects, which makes walks quadratic in the model's size. Reference counting
    still frees everything as usual; the previous state is restored on exit.

    >>> with gc_paused():
    ...     pass
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
