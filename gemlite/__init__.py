"""gemlite: Triton kernels for low-bit matmul behind a drop-in ``nn.Linear`` replacement.

    import gemlite
    from gemlite import DType, GemLiteLinear
    layer = GemLiteLinear(4, group_size=64, in_features=K, out_features=N).pack(W_q, scales, zeros, bias)
    y = layer(x)

Importing gemlite neither needs nor queries a GPU. Without one, set ``TRITON_INTERPRET=1`` in the
environment *before* importing gemlite to run the same kernels on CPU tensors (slowly).
"""

from gemlite import helper
from gemlite.autotune import cache_config, get_autotune, load_config, reset_config, set_autotune
from gemlite.formats import FORMATS, DType, Format, get_format
from gemlite.linear import GemLiteLinear
from gemlite.settings import is_deterministic, set_deterministic

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
