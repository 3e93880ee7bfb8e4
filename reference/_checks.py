"""Input validation shared by the reference modules.

Every message starts with the name of the argument at fault, then says what was expected and what was
given, so a failing call points at the argument to fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def dtype_names(dtypes: Sequence[torch.dtype]) -> str:
    return " or ".join(str(d) for d in dtypes)


def require_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def require_dtype(name: str, t: torch.Tensor, allowed: Sequence[torch.dtype]) -> None:
    if t.dtype not in allowed:
        raise TypeError(f"{name}: expected dtype {dtype_names(allowed)}, got {t.dtype}")


def require_ndim(name: str, t: torch.Tensor, ndim: int, what: str) -> None:
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor {what}, got shape {list(t.shape)}")


def require_shape(name: str, t: torch.Tensor, expected: Sequence[int], why: str = "") -> None:
    if tuple(t.shape) != tuple(expected):
        why = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected shape {list(expected)}{why}, got {list(t.shape)}")


def require_float_tensor(name: str, value: object) -> torch.Tensor:
    """A floating-point tensor (fp16, bf16, fp32 or fp64) with finite values."""
    t = require_tensor(name, value)
    require_dtype(name, t, FLOAT_DTYPES)
    require_finite(name, t)
    return t


def require_finite(name: str, t: torch.Tensor) -> None:
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.double()).all()):
        bad = (~torch.isfinite(t.double())).nonzero()[0].tolist()
        value = t.double()[tuple(bad)].item()
        raise ValueError(f"{name}: expected finite values, found {value} at index {bad}")


def require_code_range(name: str, codes: torch.Tensor, lo: int, hi: int) -> None:
    """Integer codes must lie in [lo, hi]; the message shows the first offending code."""
    if codes.numel() == 0:
        return
    wide = codes.to(torch.int64)
    bad = (wide < lo) | (wide > hi)
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        raise ValueError(
            f"{name}: codes must lie in [{lo}, {hi}], found {wide[tuple(where)].item()} at index {where}"
        )


def require_same_device(named: dict[str, torch.Tensor]) -> None:
    devices = {name: t.device for name, t in named.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors must share one device, got {listing}")


def require_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected a Python int, got {type(value).__name__}")
    return value
