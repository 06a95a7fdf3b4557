"""Which backends exist, and which one runs a call.

The compiled backend is optional: it is missing when the package was installed without a
compiler, or disabled with ``POOLCORE_NO_FAST=1``. The choice is made per call: ``"auto"`` uses
the compiled backend when it covers the call's (op, dtype, parameters) and numpy otherwise.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from . import numpy_backend

try:  # missing when installed without a compiler
    from . import fast_backend as _fast_backend
except ImportError:
    _fast_backend = None
if os.environ.get("POOLCORE_NO_FAST"):  # force the reference path (debugging, CI matrix)
    _fast_backend = None

BACKENDS = ("auto", "numpy", "fast")


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can run here: ``("numpy",)`` or ``("numpy", "fast")``."""
    return ("numpy", "fast") if _fast_backend is not None else ("numpy",)


def select(backend: str, kind: str, spec, dtype: np.dtype) -> ModuleType:
    """The backend module to run ``spec`` (``kind`` is "pool" or "adaptive_pool")."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return numpy_backend
    if _fast_backend is None:
        if backend == "fast":
            raise ValueError(
                "`backend` 'fast' is not available: poolcore was installed without its compiled "
                "extension (or POOLCORE_NO_FAST is set); available: "
                + ", ".join(available_backends())
            )
        return numpy_backend
    if _fast_backend.supports(kind, spec, dtype):
        return _fast_backend
    return numpy_backend  # per-call fallback for what the compiled kernels do not cover


def name_of(module: ModuleType) -> str:
    return "fast" if module is _fast_backend and module is not None else "numpy"
