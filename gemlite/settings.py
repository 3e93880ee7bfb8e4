"""Process-wide switches of the kernels, each with a setter and a getter.

Determinism (default on): every call with the same inputs returns bitwise the same output. Kernel
families that split K across programs (GEMV, GEMV_REVSPLITK, GEMV_SPLITK with SPLIT_K > 1,
GEMM_SPLITK with SPLIT_K > 1) then write fp32 partial sums to a workspace that a second kernel
reduces in a fixed order. With ``set_deterministic(False)`` those paths may instead add partials with
``tl.atomic_add`` into an fp32 buffer, whose summation order depends on scheduling; see
``gemlite/kernels/common.py`` for exactly which paths do.
"""

from __future__ import annotations

_DETERMINISTIC = True


def set_deterministic(enabled: bool) -> None:
    """Choose whether split-K kernel paths must be bitwise reproducible.

    enabled: True (the default) forbids atomics; False allows fp32 atomic accumulation in split-K
        paths, which is never less accurate but whose rounding depends on the order programs finish.
    Raises TypeError when `enabled` is not a bool.
    """
    global _DETERMINISTIC
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected a bool, got {type(enabled).__name__} {enabled!r}")
    _DETERMINISTIC = enabled


def is_deterministic() -> bool:
    """True when kernels must give bitwise identical results on every call (the default)."""
    return _DETERMINISTIC
