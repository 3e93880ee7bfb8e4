"""Process-wide switches of the kernels, each with a setter and a getter, and the settings generation.

Determinism (default on): every call with the same inputs returns bitwise the same output. Kernel
families that split K across programs (GEMV, GEMV_REVSPLITK, GEMV_SPLITK with SPLIT_K > 1,
GEMM_SPLITK with SPLIT_K > 1) then write fp32 partial sums to a workspace that the last program of
each output tile adds in a fixed order, in the same launch. With ``set_deterministic(False)`` those
paths may instead add partials with ``tl.atomic_add`` into an fp32 buffer, whose summation order
depends on scheduling; see ``gemlite/kernels/common.py`` for exactly which paths do.

Generation: a counter that every call which changes how a launch is chosen bumps
(`set_deterministic` here; `gemlite.autotune.set_autotune`, `load_config`, `reset_config`). The hot
path keeps its chosen (family, config) per weight layout and M bucket and re-chooses once the
generation it was chosen under is no longer current, so it never rebuilds a cache key per call.
"""

from __future__ import annotations

import itertools
import threading

_DETERMINISTIC = True
_GENERATION = 0
_COUNTER = itertools.count(1)
_LOCK = threading.Lock()


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
    bump_generation()


def is_deterministic() -> bool:
    """True when kernels must give bitwise identical results on every call (the default)."""
    return _DETERMINISTIC


def generation() -> int:
    """The current settings generation (see the module docstring)."""
    return _GENERATION


def bump_generation() -> int:
    """Start a new settings generation: every launch choice kept by the hot path is re-made."""
    global _GENERATION
    with _LOCK:
        _GENERATION = next(_COUNTER)
        return _GENERATION
