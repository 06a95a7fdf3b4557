"""poolcore: exact N-dimensional pooling with PyTorch's semantics."""

__version__ = "0.1.0"

__all__ = ["Pipeline", "Stage", "adaptive_pool", "available_backends", "pool", "__version__"]

# The public names are imported on first use (PEP 562), so that `import poolcore.batch` (the
# poolimg command, before it starts its worker processes) does not wait for numpy.
_LAZY = {
    "pool": "api",
    "adaptive_pool": "api",
    "available_backends": "backends",
    "Pipeline": "pipeline",
    "Stage": "pipeline",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'poolcore' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
