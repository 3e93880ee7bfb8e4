"""gemlite: Triton kernels for low-bit matmul behind a drop-in ``nn.Linear`` replacement.

    import gemlite
    from gemlite import DType, GemLiteLinear
    layer = GemLiteLinear(4, group_size=64, in_features=K, out_features=N).pack(W_q, scales, zeros, bias)
    y = layer(x)

Importing gemlite neither needs nor queries a GPU. Without one, set ``TRITON_INTERPRET=1`` in the
environment *before* importing gemlite to run the same kernels on CPU tensors (slowly).
"""

import importlib

from gemlite.formats import FORMATS, DType, Format, get_format

# Everything that touches Triton is imported on first use, not here: `reference/` imports only the
# vocabulary (gemlite.formats), and the kernel modules must be imported after the user has chosen
# TRITON_INTERPRET. `from gemlite import GemLiteLinear` works as usual.
_LAZY = {
    "helper": ("gemlite.helper", None),
    "GemLiteLinear": ("gemlite.linear", "GemLiteLinear"),
    "set_autotune": ("gemlite.autotune", "set_autotune"),
    "get_autotune": ("gemlite.autotune", "get_autotune"),
    "cache_config": ("gemlite.autotune", "cache_config"),
    "load_config": ("gemlite.autotune", "load_config"),
    "reset_config": ("gemlite.autotune", "reset_config"),
    "set_deterministic": ("gemlite.settings", "set_deterministic"),
    "is_deterministic": ("gemlite.settings", "is_deterministic"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'gemlite' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "DType",
    "Format",
    "FORMATS",
    "get_format",
    "GemLiteLinear",
    "helper",
    "set_autotune",
    "get_autotune",
    "cache_config",
    "load_config",
    "reset_config",
    "set_deterministic",
    "is_deterministic",
    "__version__",
]
