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
    "set_autotune": ("gemlite.compat", "set_autotune"),  # GemLite's superset of gemlite.autotune's
    "get_autotune": ("gemlite.autotune", "get_autotune"),
    "cache_config": ("gemlite.autotune", "cache_config"),
    "load_config": ("gemlite.autotune", "load_config"),
    "reset_config": ("gemlite.autotune", "reset_config"),
    "set_deterministic": ("gemlite.settings", "set_deterministic"),
    "is_deterministic": ("gemlite.settings", "is_deterministic"),
    # Public GemLite's names (gemlite.compat says what each does here)
    "compat": ("gemlite.compat", None),
    "core": ("gemlite.core", None),
    "bitpack": ("gemlite.bitpack", None),
    "GemLiteLinearTriton": ("gemlite.linear", "GemLiteLinearTriton"),
    "forward_functional": ("gemlite.compat", "forward_functional"),
    "GEMLITE_ACC_DTYPE": ("gemlite.compat", "GEMLITE_ACC_DTYPE"),
    "set_packing_bitwidth": ("gemlite.core", "set_packing_bitwidth"),
    **{
        name: ("gemlite.compat", name)
        for name in (
            "set_acc_dtype",
            "set_autotune_setting",
            "set_kernel_caching",
            "enable_tma",
            "enable_warp_specialize",
            "set_native_atomic_bfp16",
            "set_ptx_fp4_pack",
            "enable_cudagraph_autotune",
            "set_fast_nvfp4",
            "auto_detect_ptx_fp4_pack",
            "enable_activation_scaling",
        )
    },
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

__all__ = ["DType", "Format", "FORMATS", "get_format", "__version__", *_LAZY]
