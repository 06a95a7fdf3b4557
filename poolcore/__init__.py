"""poolcore: exact N-dimensional pooling with PyTorch's semantics."""

from .backends import available_backends
from .pool import adaptive_pool, pool

__version__ = "0.1.0"

__all__ = ["Pipeline", "Stage", "adaptive_pool", "available_backends", "pool", "__version__"]


def __getattr__(name: str):
    # Pipeline pulls in the TOML reader; import it on first use to keep `import poolcore` light.
    if name in ("Pipeline", "Stage"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'poolcore' has no attribute {name!r}")
