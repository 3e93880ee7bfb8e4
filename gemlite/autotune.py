"""Kernel configs: the search spaces, their legality per weight layout, the autotuner and its cache.

How a launch gets its config (`choose_config`), first match wins:
1. a config forced with ``with forced_config(family, config):`` (tests, mutation and compile suites;
   per thread and per asyncio task: a `contextvars` variable);
2. the process cache, keyed by family and `config_key` (filled by tuning or by `load_config`);
3. under the Triton interpreter, or in mode False, or when timing is impossible (CUDA graph
   capture, torch.compile tracing): the family's first legal default config; nothing is cached;
4. otherwise the legal candidates of the current mode ("fast" or "max") are timed with
   ``triton.testing.do_bench`` (each candidate's kernel relaunched through a `Replay`, so the host's
   planning is not timed with it: `gemlite.matmul._timed_call`) and the fastest is cached.

The JSON cache file has one object per family: ``{"GEMV": {"<key>": {config fields}}, ...}``.

Config spaces are written for Hopper (H100: 228 KB shared memory per SM, 3 TB/s HBM) and are still
unmeasured guesses, marked as such; the compile-only suite checks that every one of them compiles
for sm_90 within the shared-memory budget and that the tensor-core families lower to wgmma/mma.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields

import torch

from gemlite.formats import FAMILIES, m_bucket
from gemlite.settings import bump_generation, is_deterministic

MODES = ("fast", "max", False)


@dataclass(frozen=True)
class Config:
    """One launch configuration. Families read only the fields they use:

    GEMV: BLOCK_N, BLOCK_K, SPLIT_K (K splits over programs); GEMV_REVSPLITK: BLOCK_N, BLOCK_K (each
    program reduces 2 * BLOCK_K of K); GEMV_SPLITK: BLOCK_N, BLOCK_K, SPLIT_K; the three GEMV families
    also BLOCK_M, the rows of x per program (1 or 2, against the same weight tiles); GEMM_SPLITK: BLOCK_M,
    BLOCK_N, BLOCK_K, SPLIT_K, GROUP_M; GEMM: the same, and DEQUANT = 1 to dequantize
    the weight into a scratch tensor (tiles BLOCK_K x BLOCK_N) and hand the product to cuBLAS
    (`gemlite.kernels.dequant`). All: num_warps, num_stages.
    """

    BLOCK_M: int = 1
    BLOCK_N: int = 64
    BLOCK_K: int = 32
    SPLIT_K: int = 1
    GROUP_M: int = 1
    num_warps: int = 4
    num_stages: int = 2
    DEQUANT: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            low = 0 if f.name == "DEQUANT" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"config: {f.name} must be a positive int, got {v!r}")
        if self.DEQUANT not in (0, 1):
            raise ValueError(f"config: DEQUANT must be 0 or 1, got {self.DEQUANT}")
        for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps"):
            v = getattr(self, name)
            if v & (v - 1):
                raise ValueError(f"config: {name} must be a power of two, got {v}")

    def as_dict(self) -> dict[str, int]:
        d = asdict(self)
        if not self.DEQUANT:
            del d["DEQUANT"]  # the fused kernels' configs read as they always did
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Build from a dict of fields (as in the JSON cache); raises ValueError for unknown fields."""
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a dict of fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def short(self) -> str:
        """Compact label for tables and error messages."""
        return (
            f"BM{self.BLOCK_M}_BN{self.BLOCK_N}_BK{self.BLOCK_K}_SK{self.SPLIT_K}_GM{self.GROUP_M}"
            f"_w{self.num_warps}_s{self.num_stages}{'_DQ' if self.DEQUANT else ''}"
        )


#: The most activation rows a GEMV-family program multiplies into each weight tile it loads.
GEMV_ROWS = 2


def _cfg(**kw) -> Config:
    return Config(**kw)


# ------------------------------------------------------------------------------------------------
# Config spaces. Every "fast" list (and so every "max" list and default pair) ends with a small-K-tile
# fallback, so grouped layouts with group_size 32 (BLOCK_K 32) always have a legal candidate. "max"
# adds up to three configs per family: the compile-only suite compiles every config for every
# representative layout on 2 CPU cores, which bounds the spaces.
#
# Evidence: `tools/config_sweep.py` on the H200 (2026-12-01, triton 3.6, fp16, A16W4_HQQ_INT g128
# unless named), the fastest of a grid per shape (K x N, M):
# * GEMV, M = 1, after its grouped sum (2026-12-02; 54-config grid BN 32/64/128 x BK 64/128 x SK 4/8/16 x
#   w 1/2/4): BN64 BK128 SK8 w4 wins 4096x14336 (17.9 us) and 8192x28672 (57.0 us), BN32 BK128 SK16 w2
#   14336x4096 (18.8 us), BN64 BK128 SK16 w4 28672x8192 (58.4 us), BN32 BK128 SK16 w4 4096x1024 and
#   8192x1024 (5.4 / 6.9 us), BN32 BK128 SK8 w2 4096x4096 (8.1 us); A16W2 g128: BN64 BK128 SK8 w4
#   4096x14336 (17.1 us), BN128 BK64 SK16 w1 8192x28672 (51.4 us). The runners-up are within 2-4%.
#   On the H100 after the subnormal fields and paired steps (2026-12-07, 54-config grid BN 32/64/128 x
#   BK 32/64/128 x SK 8/16/32 x w 1/2): BN64 BK32 SK8 w1 wins 8192x28672 (45.5 us, 91% of copy; the
#   space's best, SK16, 49.2), BN64 BK32 SK16 w1 4096x14336 (15.1 us), BN32 BK128 SK8 w2 4096x4096
#   (7.6 us). The first joined the fast space
#   (it then won 4 of the 57 re-tuned H100 M = 1 keys); the last, tried in it too, won none and left the
#   "max" space to keep GEMV's at 12 (suites/perf/NOTES.md, 2026-12-07).
# * GEMV_SPLITK, A16W8_INT8, M = 1: BN16 BK256 SK1 w4 (4096x14336, 20.0 us) and BN8 BK1024 SK1 w4
#   (14336x4096, 20.2 us); splitting K is slower for unpacked weights.
# * GEMM_SPLITK: M = 16: BM16 BN128 BK64/128 SK8 s3 (38.1 / 40.2 us); M = 64: BM64 BN64 BK64 SK4 s3
#   (4096x14336, 50.3 us), BM64 BN128 BK128 SK8 s3 (14336x4096, 48.5 us). A16W8_FP8 16384x16384 M = 32
#   (2026-12-03, 32 configs): BM32 BN128 BK128 SK2 s4 77.5 us, where the tuner had picked BM16 SK4 (>83).
#   In the re-tuned H200 cache (2026-12-03, 270 keys) BM16 BN128 BK128 SK8 wins 67 keys and BM16 BN128
#   BK64 SK8 none: the first is the default now, the second left the space (for the SK2 one).
#   H100 sweep of A16W4 g128 (2026-12-07, 144 configs BM 16/32/64 x BN 64/128/256 x BK 64/128 x SK
#   1/2/4/8 x w 4/8, s3, tools/config_sweep.py): M = 16: BM16 BN64 BK128 SK4 24.6 us (4096x14336), SK2
#   82.2 us (8192x28672), where the cached BM16 BN256 BK64 SK4 took 101.8 in the perf suite; M = 64:
#   BM64 BN64 BK128 SK1 34.2 us (4096x14336), BM64 BN256 BK64 SK2 119.7 (8192x28672; BM64 BN64 BK128
#   SK1 128.4 there). The first three joined the fast space (ahead of its last entry, which the
#   "default" space keeps); the space's limit of 12 left out the fourth.
# * GEMM, 4096x14336: DEQUANT=1 (dequantize + cuBLAS) 212 us at M = 1024 and 672 us at M = 4096 against
#   the best fused tiles' 373 / 1451 us (BM128 BN128 BK64 w4).
# * GEMM with a K split (2026-12-03, not yet timed): at M = 128-512 the unsplit tiles leave one
#   4-warp program per SM (4096x4096 M = 128 / 256 / 512 with BM64 BN128: 64 / 128 / 256 programs,
#   58.5 / 59.0 / 72.2 us in the perf suite against cuBLAS fp16's 13.7 / 18.9 / 24.9): its K loop
#   (427 SASS instructions per thread per BLOCK_K step, `tools/sass_count.py`) runs at one warp per
#   scheduler, latency-bound at ~0.9 us a step. SPLIT_K 4 / 2 multiplies the programs per SM, as in
#   GEMM_SPLITK. BM64 BN256 BK64 w4 s3 (chosen for 1 of 225 H200 keys, 0 of 225 H100 keys) made room.
# * Restored 2026-12-02 after the perf-suite A/B against baa9cfe (reports/ab/h200-core-v2-vs-baa9cfe.md):
#   the re-sweep above had dropped the old spaces' most frequent H200 winners, and 132 of 540 cases
#   ran slower than baa9cfe, nearly all at M = 2-64: GEMM_SPLITK BM16 BN256 BK64 SK4 (76 of 270 keys),
#   BM16 BN128 BK128 SK4 (66), BM32 BN128 BK128 SK4 (40), BM64 BN128 BK64 SK2 (28); GEMV_SPLITK BN2
#   BK2048 (10 of 18; A16W8_INT8 8192x1024 M=1 took 12.3 us against baa9cfe's 6.5 with it). Not yet
#   re-tuned on the GPU with them.
# The other entries are untimed neighbours kept for other shapes and formats.
# ------------------------------------------------------------------------------------------------

_GEMV_FAST = [
    _cfg(BLOCK_N=64, BLOCK_K=128, SPLIT_K=8, num_warps=4),
    _cfg(BLOCK_N=64, BLOCK_K=128, SPLIT_K=16, num_warps=4),
    _cfg(BLOCK_N=32, BLOCK_K=128, SPLIT_K=16, num_warps=2),
    _cfg(BLOCK_N=128, BLOCK_K=64, SPLIT_K=16, num_warps=1),
    _cfg(BLOCK_N=64, BLOCK_K=32, SPLIT_K=8, num_warps=1),
    _cfg(BLOCK_N=64, BLOCK_K=32, SPLIT_K=16, num_warps=1),
]
# Two rows per program (M >= 2; `_for_rows` keeps these for M >= 2 and the others for M = 1).
_GEMV_PAIR_FAST = [
    _cfg(BLOCK_M=2, BLOCK_N=32, BLOCK_K=128, SPLIT_K=8, num_warps=2),
    _cfg(BLOCK_M=2, BLOCK_N=64, BLOCK_K=128, SPLIT_K=4, num_warps=4),
    _cfg(BLOCK_M=2, BLOCK_N=32, BLOCK_K=128, SPLIT_K=16, num_warps=2),
    _cfg(BLOCK_M=2, BLOCK_N=32, BLOCK_K=64, SPLIT_K=8, num_warps=2),
    _cfg(BLOCK_M=2, BLOCK_N=64, BLOCK_K=32, SPLIT_K=16, num_warps=1),
]
_GEMV_MAX_EXTRA = [
    _cfg(BLOCK_N=32, BLOCK_K=128, SPLIT_K=16, num_warps=4),
]
_REV_FAST = [
    _cfg(BLOCK_N=256, BLOCK_K=64, num_warps=4),
    _cfg(BLOCK_N=512, BLOCK_K=64, num_warps=8),
    _cfg(BLOCK_N=128, BLOCK_K=64, num_warps=4),
    _cfg(BLOCK_N=512, BLOCK_K=32, num_warps=8),
    _cfg(BLOCK_N=256, BLOCK_K=32, num_warps=4),
]
_REV_MAX_EXTRA = [
    _cfg(BLOCK_N=1024, BLOCK_K=32, num_warps=8),
    _cfg(BLOCK_N=128, BLOCK_K=128, num_warps=4),
    _cfg(BLOCK_N=128, BLOCK_K=32, num_warps=4),
]
_SPLITK_GEMV_FAST = [
    _cfg(BLOCK_N=16, BLOCK_K=256, SPLIT_K=1, num_warps=4),
    _cfg(BLOCK_N=2, BLOCK_K=2048, SPLIT_K=1, num_warps=4),
    _cfg(BLOCK_N=8, BLOCK_K=1024, SPLIT_K=1, num_warps=4),
    _cfg(BLOCK_N=8, BLOCK_K=512, SPLIT_K=1, num_warps=4),
    _cfg(BLOCK_N=4, BLOCK_K=1024, SPLIT_K=1, num_warps=4),
    _cfg(BLOCK_N=64, BLOCK_K=32, SPLIT_K=4, num_warps=4),
]
_SPLITK_GEMV_MAX_EXTRA = [
    _cfg(BLOCK_N=32, BLOCK_K=128, SPLIT_K=4, num_warps=4),
    _cfg(BLOCK_N=8, BLOCK_K=1024, SPLIT_K=1, num_warps=8),
    _cfg(BLOCK_N=4, BLOCK_K=512, SPLIT_K=2, num_warps=4),
]
_GEMM_SPLITK_FAST = [
    _cfg(BLOCK_M=16, BLOCK_N=128, BLOCK_K=128, SPLIT_K=8, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, SPLIT_K=8, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=16, BLOCK_N=256, BLOCK_K=64, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=16, BLOCK_N=128, BLOCK_K=128, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=32, BLOCK_N=128, BLOCK_K=128, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=32, BLOCK_N=128, BLOCK_K=128, SPLIT_K=2, GROUP_M=8, num_warps=4, num_stages=4),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, SPLIT_K=2, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, SPLIT_K=2, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, SPLIT_K=1, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=32, BLOCK_N=128, BLOCK_K=32, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=4),
]
# Empty: the fast space holds the 12 configs the compile-only suite affords (its last three extras,
# BM32 BN64 BK128 SK8, BM64 BN64 BK128 SK4 and BM16 BN64 BK128 SK8 s4, made room for the sweep's winners).
_GEMM_SPLITK_MAX_EXTRA: list[Config] = []
_GEMM_FAST = [
    _cfg(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4),
    _cfg(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, SPLIT_K=4, GROUP_M=8, num_warps=4, num_stages=4),
    _cfg(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, SPLIT_K=2, GROUP_M=8, num_warps=8, num_stages=3),
    # 8-bit activations: the fp8 dot promotes each K tile's product to fp32 after a wait on its
    # wgmma, so a 128-deep tile halves the waits and adds per product (sm_90 SASS, e4m3 BM128 BN128
    # w8: K loop 128 instructions a 64-deep tile, 160 a 128-deep one); one warpgroup on a 64-row
    # tile leaves room for two programs an SM, one adding while the other's wgmma runs, and 128-row
    # tiles walk two K tiles an iteration, each tile's adds under the other's wgmma (`gemm.py`).
    _cfg(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=8, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, GROUP_M=8, num_warps=4, num_stages=4),
    # Packed codes at M >= 256: a 128-row tile's dequantization takes as many issue cycles as its wgmma
    # (A16W4 g128 BM128 BN128 BK64 w8: K loop 256 sm_90 SASS instructions, 512 issue cycles a scheduler
    # against 512 tensor cycles on the H100), a 256-row tile dequantizes each weight for twice the rows
    # (284 instructions, 568 issue cycles against 1024; 223 registers, no spills). From "max", untimed.
    # (The last entry stays last: the "default" space's BK32 tile for groups of 32.)
    _cfg(BLOCK_M=256, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=32, GROUP_M=8, num_warps=4, num_stages=4),
]
# Dequantize into a scratch weight, then cuBLAS (the BLOCK_K x BLOCK_N tile of the dequantization).
_GEMM_DEQUANT = [
    _cfg(BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, DEQUANT=1, num_warps=4),
    _cfg(BLOCK_M=16, BLOCK_N=128, BLOCK_K=32, DEQUANT=1, num_warps=4),
]
# A8W4 / A8W2 HQQ dynamic (`WeightLayout.codes_scratch`): the codes copied once into an e4m3 scratch,
# then the typed-load 8-bit GEMM with these tiles (the fused tiles above unpack and convert every code
# in every program: 541 sm_90 SASS instructions a BM128 BN128 BK64 step, 745 a BK128 one, against 384
# a BK128 step on the scratch; H200: 1.97-2.25x the best fused tile, suites/perf/NOTES.md, 2026-12-07
# fourth session).
_GEMM_CODES_SCRATCH = [
    _cfg(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=8, DEQUANT=1, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, GROUP_M=8, DEQUANT=1, num_warps=4, num_stages=4),
]
_GEMM_MAX_EXTRA = [
    _cfg(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4),
]

# Per family: "fast" and "max" (autotuned), "default" (mode False: the first legal one is used),
# "interpreter" (small tiles for CPU runs under TRITON_INTERPRET=1; never used on a GPU).
_SPACES: dict[str, dict[str, list[Config]]] = {
    "GEMV": {
        "fast": _GEMV_FAST + _GEMV_PAIR_FAST,
        "max": _GEMV_FAST + _GEMV_PAIR_FAST + _GEMV_MAX_EXTRA,
        "default": [_GEMV_FAST[0], _GEMV_FAST[-1], _GEMV_PAIR_FAST[0], _GEMV_PAIR_FAST[-1]],
        # Two rows per program from M = 2, as on a GPU, so CPU runs of `forward` take the same path.
        "interpreter": [
            _cfg(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2, num_warps=4),
            _cfg(BLOCK_M=2, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2, num_warps=4),
        ],
    },
    "GEMV_REVSPLITK": {
        "fast": _REV_FAST,
        "max": _REV_FAST + _REV_MAX_EXTRA,
        "default": [_REV_FAST[0], _REV_FAST[-1]],
        "interpreter": [_cfg(BLOCK_N=64, BLOCK_K=32)],
    },
    "GEMV_SPLITK": {
        "fast": _SPLITK_GEMV_FAST,
        "max": _SPLITK_GEMV_FAST + _SPLITK_GEMV_MAX_EXTRA,
        "default": [_SPLITK_GEMV_FAST[0], _SPLITK_GEMV_FAST[-1]],
        "interpreter": [_cfg(BLOCK_N=64, BLOCK_K=64, SPLIT_K=2), _cfg(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2)],
    },
    "GEMM_SPLITK": {
        "fast": _GEMM_SPLITK_FAST,
        "max": _GEMM_SPLITK_FAST + _GEMM_SPLITK_MAX_EXTRA,
        "default": [_GEMM_SPLITK_FAST[0], _GEMM_SPLITK_FAST[-1]],
        "interpreter": [_cfg(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2)],
    },
    "GEMM": {
        "fast": _GEMM_FAST + _GEMM_DEQUANT + _GEMM_CODES_SCRATCH,
        "max": _GEMM_FAST + _GEMM_MAX_EXTRA + _GEMM_DEQUANT + _GEMM_CODES_SCRATCH,
        "default": [_GEMM_FAST[0], _GEMM_FAST[-1]],
        "interpreter": [_cfg(BLOCK_M=32, BLOCK_N=64, BLOCK_K=32, GROUP_M=4)],
    },
}


def _check_family(family) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")


def _check_mode(mode) -> None:
    if not (mode is False or (isinstance(mode, str) and mode in ("fast", "max"))):
        raise ValueError(f"mode: expected 'fast', 'max' or False, got {mode!r}")


def configs(family: str, mode: str | bool) -> list[Config]:
    """Every config the GPU autotuner (mode "fast" or "max") or the heuristic (mode False) can pick
    for `family`, before filtering by layout. Raises ValueError for an unknown family or mode."""
    _check_family(family)
    _check_mode(mode)
    return list(_SPACES[family]["default" if mode is False else mode])


def interpreter_configs(family: str) -> list[Config]:
    """The small tiles used under the Triton interpreter (CPU only), in order of preference."""
    _check_family(family)
    return list(_SPACES[family]["interpreter"])


# ------------------------------------------------------------------------------------------------
# Legality: which tiles a kernel may run for a layout
# ------------------------------------------------------------------------------------------------


def illegal_reason(family: str, config: Config, layout) -> str | None:
    """Why `config` cannot run `family` on `layout`, or None when it can.

    Rules: GEMV families reduce one or two activation rows per program (BLOCK_M <= 2; two rows share
    each weight tile) and read whole packed words (BLOCK_K a multiple of the codes per word);
    tensor-core tiles need BLOCK_M, BLOCK_N, BLOCK_K >= 16; the weight scheme says which K tiles its
    scale groups allow (`k_tile_problem`: a tile must not straddle two groups, so BLOCK_K divides the
    group size; MX/NVFP4 groups may also run inside a tile); GEMV_REVSPLITK (no K split parameter)
    and DEQUANT=1 configs (cuBLAS takes the whole product) take SPLIT_K == 1. Formats whose activations
    are codes (quantized at run time, or given by the caller): no DEQUANT=1 (a 16-bit cuBLAS product
    would not multiply their codes) except on `WeightLayout.codes_scratch` layouts, where DEQUANT=1 runs
    the 8-bit GEMM on an e4m3 copy of the codes with the config's tile (BLOCK_M >= 64), on
    `WeightLayout.operands_scratch` layouts (microscaled), where both operands are dequantized exactly
    into bf16 for cuBLAS, and on `WeightLayout.fp8_scaled_mm` layouts (A8W8_FP8_dynamic), where
    cuBLAS's fp8 GEMM multiplies the codes; BLOCK_K >= 32 for the 8-bit dot.
    """
    _check_family(family)
    if family in ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK"):
        if config.BLOCK_M > GEMV_ROWS:
            return (
                f"{family} reduces one or two rows per program: BLOCK_M must be <= {GEMV_ROWS}, "
                f"got {config.BLOCK_M}"
            )
        if config.BLOCK_K % layout.elems_per_word:
            return (
                f"{family} reads whole words: BLOCK_K must be a multiple of the {layout.elems_per_word} "
                f"codes per word, got {config.BLOCK_K}"
            )
    elif min(config.BLOCK_M, config.BLOCK_N, config.BLOCK_K) < 16:
        return f"{family} uses tl.dot: BLOCK_M/N/K must be >= 16, got {config.short()}"
    if family == "GEMV_REVSPLITK" and config.SPLIT_K != 1:
        return f"{family} has no SPLIT_K parameter: it must be 1, got {config.SPLIT_K}"
    if config.DEQUANT and family != "GEMM":
        return f"{family}: only GEMM dequantizes into a scratch weight (DEQUANT=1), got {config.short()}"
    if config.DEQUANT and config.SPLIT_K != 1:
        return f"{family}: DEQUANT=1 hands cuBLAS the whole product: SPLIT_K must be 1, got {config.SPLIT_K}"
    scratch = layout.codes_scratch or layout.operands_scratch or layout.fp8_scaled_mm
    if layout.act.is_quantized and config.DEQUANT and not scratch:
        return (
            f"{layout.format.name} multiplies activation codes: DEQUANT=1 (a 16-bit cuBLAS product) "
            "would not multiply them"
        )
    if config.DEQUANT and layout.codes_scratch and config.BLOCK_M < 64:
        return (
            f"{family}: DEQUANT=1 on {layout.format.name} runs the 8-bit GEMM on a copy of the codes with "
            f"this tile: BLOCK_M must be >= 64, got {config.short()}"
        )
    if layout.act.is_quantized:
        if family in ("GEMM", "GEMM_SPLITK") and config.BLOCK_K < 32:
            return f"{family}: an 8-bit tl.dot takes BLOCK_K >= 32, got {config.BLOCK_K}"
    problem = layout.scheme.k_tile_problem(layout, config.BLOCK_K)  # e.g. groups straddled
    if problem is not None:
        return f"{family}: {problem}"
    return None


def _for_rows(family: str, candidates: list[Config], M: int | None) -> list[Config]:
    """The candidates that suit M rows of x: for the GEMV families those with BLOCK_M = min(M, GEMV_ROWS)
    (a second row at M = 1 is wasted work; one row per program at M >= 2 streams the weight once per
    row), or all of them when none does (the interpreter's tiles); unchanged for M None."""
    if M is None or not family.startswith("GEMV"):
        return candidates
    fit = [c for c in candidates if c.BLOCK_M == min(M, GEMV_ROWS)]
    return fit or candidates


def legal_configs(family: str, layout, mode: str | bool, M: int | None = None) -> list[Config]:
    """The configs of `mode`'s space legal for `layout` (and, given M, those that suit M rows). The codes
    scratch's tiles are candidates only where they run the 8-bit GEMM (`WeightLayout.codes_scratch`):
    elsewhere DEQUANT=1 hands cuBLAS the product and they would time a third dequantization tile."""
    space = configs(family, mode)
    if not layout.codes_scratch:
        space = [c for c in space if c not in _GEMM_CODES_SCRATCH]
    if layout.fp8_scaled_mm:  # cuBLAS takes the product whatever the tile: one candidate times it
        space = [c for c in space if not c.DEQUANT or c == _GEMM_DEQUANT[0]]
    legal = [c for c in space if illegal_reason(family, c, layout) is None]
    return _for_rows(family, legal, M)


def default_config(family: str, layout, interpreter: bool = False, M: int | None = None) -> Config:
    """The heuristic config: the first legal default (interpreter: the first legal small tile) that
    suits M rows (`_for_rows`; any M when None)."""
    space = _SPACES[family]
    pool = space["interpreter"] if interpreter else space["default"]
    legal = _for_rows(family, [c for c in pool if illegal_reason(family, c, layout) is None], M)
    if legal:
        return legal[0]
    raise ValueError(
        f"group_size: no {family} tile is legal for group_size={layout.group_size} "
        f"(K={layout.in_features}); use a multiple of 32 that divides K"
    )


def check_layout(layout) -> None:
    """Raise ValueError unless every family has a legal default and interpreter config for `layout`."""
    for family in FAMILIES:
        default_config(family, layout, interpreter=False)
        default_config(family, layout, interpreter=True)


# ------------------------------------------------------------------------------------------------
# Modes, keys, the process cache
# ------------------------------------------------------------------------------------------------

_LOCK = threading.RLock()
_MODE: str | bool = "fast"
_CACHE: dict[str, dict[str, Config]] = {f: {} for f in FAMILIES}
# The configs forced in the current context: a mapping family -> Config, or None when nothing is forced.
_FORCED: contextvars.ContextVar[dict[str, Config] | None] = contextvars.ContextVar(
    "gemlite_forced", default=None
)


def set_autotune(mode: str | bool) -> None:
    """Choose how configs are picked for keys not in the cache.

    mode: "fast" (default: time a short hand-picked list per family on first use), "max" (time a
        larger space), False (never time: one heuristic default per family), or True, which means
        "max" as in public GemLite (`get_autotune` then reads "max").
    Configs already cached stay in use; call `reset_config()` to re-tune. Raises ValueError otherwise.
    (`gemlite.set_autotune` is GemLite's superset: also "default" and per-family dicts, `gemlite.compat`.)
    """
    global _MODE
    if mode is True:
        mode = "max"
    _check_mode(mode)
    _MODE = mode
    bump_generation()


def get_autotune() -> str | bool:
    """The current mode: "fast", "max" or False."""
    return _MODE


def _dt(dtype: torch.dtype | None) -> str:
    return "none" if dtype is None else str(dtype).replace("torch.", "")


def config_key(M: int, layout, out_dtype: torch.dtype, scale_dtype: torch.dtype | None) -> str:
    """The cache key within a family: everything that changes which config is fastest.

    M bucket, N, K, resolved group size, weight kind and bits, packing word, zero-point mode, scale
    dtype, activation (compute) dtype, output dtype, whether determinism forbids atomics, and for
    formats with activation codes their kind (``xq=int8``, ``xq=int8_codes``; weight-only keys unchanged).
    """
    spec = layout.spec
    return ",".join(
        (
            f"M={m_bucket(M)}",
            f"N={layout.out_features}",
            f"K={layout.in_features}",
            f"group={layout.group_size}",
            f"weight={spec.kind.value}{spec.bits}",
            f"word={layout.word_bits}",
            f"zeros={layout.zero_mode.value}",
            f"scales={_dt(scale_dtype)}",
            f"act={_dt(layout.compute_dtype)}",
            f"out={_dt(out_dtype)}",
            f"det={int(is_deterministic())}",
            *((f"xq={layout.act.kind.value}",) if layout.act.is_quantized else ()),
        )
    )


@contextlib.contextmanager
def forced_config(family: str, config: Config | dict) -> Iterator[Config]:
    """Within the block every `family` launch uses `config` (no cache, no tuning); nests.

    The setting belongs to the current thread (and asyncio task): other threads keep their own.
    Raises ValueError for an unknown family or config fields; a config illegal for a layout raises
    ValueError at launch.
    """
    _check_family(family)
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    token = _FORCED.set({**(_FORCED.get() or {}), family: cfg})
    try:
        yield cfg
    finally:
        _FORCED.reset(token)


def forcing() -> bool:
    """Whether a `forced_config` block is active in this context (the hot path then skips its cache)."""
    return _FORCED.get() is not None


def cached_config(family: str, key: str) -> Config | None:
    """The config cached for (family, key), if any."""
    _check_family(family)
    with _LOCK:
        return _CACHE[family].get(key)


def get_config(
    family: str,
    M: int,
    layout,
    out_dtype: torch.dtype,
    scale_dtype: torch.dtype | None,
    *,
    timer: Callable[[Config], float] | None = None,
    interpreter: bool = False,
) -> Config:
    """The config to launch `family` with (see the module docstring for the order of sources).

    timer: measures one candidate (milliseconds; may raise for a config that does not fit the
        device); None when timing is impossible (e.g. during CUDA graph capture).
    interpreter: the Triton interpreter runs the kernels: never time, use the small default tiles.
    """
    return choose_config(family, M, layout, out_dtype, scale_dtype, timer=timer, interpreter=interpreter)[0]


def choose_config(family, M, layout, out_dtype, scale_dtype, *, timer=None, interpreter=False):
    """`get_config`, plus how the config was found: ``(config, source)`` with source one of
    "forced", "cache" (cached or just tuned: stable until the settings change), "interpreter",
    "default" (mode False) or "untimed" (no timer: an untuned key met during capture or tracing)."""
    _check_family(family)
    forced = (_FORCED.get() or {}).get(family)
    if forced is not None:
        reason = illegal_reason(family, forced, layout)
        if reason is not None:
            raise ValueError(f"config: forced config {forced.short()} is illegal here: {reason}")
        return forced, "forced"
    key = config_key(M, layout, out_dtype, scale_dtype)
    cached = cached_config(family, key)
    if cached is not None:
        reason = illegal_reason(family, cached, layout)
        if reason is None:
            return cached, "cache"
        warnings.warn(f"gemlite: ignoring cached {family} config for {key}: {reason}", stacklevel=2)
    if interpreter:
        return default_config(family, layout, interpreter=True, M=M), "interpreter"
    mode = _MODE
    if mode is False:
        return default_config(family, layout, M=M), "default"
    if timer is None:
        return default_config(family, layout, M=M), "untimed"
    best = _tune(family, legal_configs(family, layout, mode, M), timer)
    with _LOCK:
        _CACHE[family][key] = best
    return best, "cache"


def _tune(family: str, candidates: list[Config], timer: Callable[[Config], float]) -> Config:
    """The fastest candidate; candidates that fail (e.g. out of shared memory) are skipped."""
    best, best_ms, errors = None, math.inf, []
    for cfg in candidates:
        try:
            ms = float(timer(cfg))
        except Exception as exc:  # noqa: BLE001 - a tile that does not fit this GPU is skipped
            errors.append((cfg, exc))
            continue
        if ms < best_ms:
            best, best_ms = cfg, ms
    if best is None:
        first = errors[0][1] if errors else None
        raise RuntimeError(
            f"gemlite: every {family} candidate config failed ({len(errors)} tried)"
        ) from first
    if errors:
        # Skipped, not hidden: a tile that fails for another reason than resources is a bug to see.
        failed = "; ".join(f"{cfg}: {type(exc).__name__}: {exc}" for cfg, exc in errors)
        warnings.warn(
            f"gemlite: {family} autotune skipped {len(errors)} failing config(s): {failed}", stacklevel=2
        )
    return best


def bench_ms(fn: Callable[[], object]) -> float:
    """Median time of fn in milliseconds (triton.testing.do_bench: warm-up, L2 flushed per rep)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median"))


# ------------------------------------------------------------------------------------------------
# The JSON config cache
# ------------------------------------------------------------------------------------------------


class ConfigCacheWarning(UserWarning):
    """A config cache file that could not be used (unreadable, malformed, or public GemLite's layout);
    the message names the file and what gemlite did instead."""


def _gemlite_layout_hint(data) -> str:
    """A hint when `data` looks like public GemLite's cache: keys ``"(M, N, K, group_size,
    elements_per_sample, type_id)"`` mapping to Triton kwargs (``BLOCK_SIZE_M``, ``num_warps``, ...)."""
    if not isinstance(data, dict):
        return ""
    for entries in data.values():
        if isinstance(entries, dict):
            for key, cfg in entries.items():
                if str(key).startswith("(") or (isinstance(cfg, dict) and "BLOCK_SIZE_M" in cfg):
                    return (
                        " (it is public GemLite's cache layout: keys '(M, N, K, group_size, "
                        "elements_per_sample, type_id)' with Triton kwargs; GemLite's kernels and gemlite's "
                        "differ, so their configs do not carry over: tune with gemlite.helper.warmup and "
                        "save with gemlite.cache_config)"
                    )
    return ""


def _parse_cache(data, path) -> dict[str, dict[str, Config]]:
    hint = _gemlite_layout_hint(data)
    if not isinstance(data, dict):
        raise ValueError(f"path: {path} does not hold a JSON object of families")
    out: dict[str, dict[str, Config]] = {}
    for family, entries in data.items():
        if family not in FAMILIES:
            raise ValueError(f"path: {path} has unknown family {family!r}; expected one of {FAMILIES}{hint}")
        if not isinstance(entries, dict):
            raise ValueError(f"path: {path}: {family} must map key strings to configs{hint}")
        out[family] = {}
        for key, cfg in entries.items():
            try:
                out[family][str(key)] = Config.from_dict(cfg)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"path: {path}: bad {family} config for {key!r}: {exc}{hint}") from None
    return out


def _read_cache(path: str) -> dict[str, dict[str, Config]]:
    """Parse a cache file; ValueError naming the path for anything but a readable gemlite cache
    (FileNotFoundError / OSError when it cannot be opened)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"path: {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); not a config cache"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"path: {path} is not valid JSON (corrupted or truncated?): {exc}") from None
    return _parse_cache(data, path)


def load_config(
    path: str | os.PathLike | None,
    print_error: bool = True,
    overwrite: bool = False,
    *,
    strict: bool = False,
) -> bool:
    """Merge a JSON config cache file into the process cache (file entries win); a cached key is then
    launched without tuning. Public GemLite's signature and result.

    Args:
        path: the file (`cache_config` writes it). None returns False (as GemLite does).
        print_error: on failure, warn (`ConfigCacheWarning`, naming the path and the reason);
            False: fail silently.
        overwrite: replace the process cache with the file's entries instead of merging.
        strict: raise instead of returning False.

    Returns:
        True when the file was loaded; False when it was not (missing, unreadable, not UTF-8, corrupt or
        truncated JSON, wrong schema, or public GemLite's own cache layout, whose configs do not apply
        to gemlite's kernels). Nothing of a file that fails is loaded; the process cache is unchanged.

    Raises (only with ``strict=True``): FileNotFoundError / OSError when the file cannot be read,
    ValueError naming the path and what is wrong with its content. TypeError for a bad argument.
    """
    for name, flag in (("print_error", print_error), ("overwrite", overwrite), ("strict", strict)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {type(flag).__name__} {flag!r}")
    if path is None:
        return False
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    try:
        parsed = _read_cache(path)
    except (OSError, ValueError) as exc:
        if strict:
            raise
        if print_error:
            reason = exc if isinstance(exc, ValueError) else f"path: cannot read {path}: {exc}"
            warnings.warn(
                f"gemlite.load_config: {reason}; nothing loaded, configs will be tuned (or the "
                "heuristic ones used)",
                ConfigCacheWarning,
                stacklevel=2,
            )
        return False
    with _LOCK:
        if overwrite:
            for family in FAMILIES:
                _CACHE[family].clear()
        for family, entries in parsed.items():
            _CACHE[family].update(entries)
    bump_generation()
    return True


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive lock between processes on ``<path>.lock`` (left in place; flock releases it when the
    holder exits, even by a crash). POSIX: fcntl.flock; Windows: msvcrt.locking; elsewhere an
    O_EXCL lock file, taken over after 60 s (a holder that died without removing it)."""
    lock_path = path + ".lock"
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is not None:
        with open(lock_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return
    try:
        import msvcrt
    except ImportError:
        msvcrt = None
    if msvcrt is not None:
        with open(lock_path, "a+b") as f:
            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    deadline = time.monotonic() + 60.0
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
                deadline = time.monotonic() + 60.0
            time.sleep(0.01)
    try:
        yield
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(lock_path)


def _set_aside(path: str) -> str:
    """Rename an unreadable cache file to a free ``<path>.unreadable[.N]`` name; return that name."""
    target = path + ".unreadable"
    n = 1
    while os.path.exists(target):
        target = f"{path}.unreadable.{n}"
        n += 1
    os.replace(path, target)
    return target


def cache_config(path: str | os.PathLike, *, strict: bool = False) -> None:
    """Write every cached config to a JSON file, merged over the file's entries when it exists
    (process entries win). The file is replaced atomically, under a lock (``<path>.lock``) that other
    processes calling `cache_config` on the same file wait for, so concurrent writers lose nothing.

    An existing file that cannot be read as a gemlite cache (not UTF-8, corrupt or truncated JSON, wrong
    schema, public GemLite's layout) is moved aside to ``<path>.unreadable`` with a
    `ConfigCacheWarning` naming both paths, and a new file is written; ``strict=True`` raises
    ValueError (naming the path) instead and writes nothing.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__} {strict!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with _LOCK, _file_lock(path):
        merged: dict[str, dict[str, dict]] = {f: {} for f in FAMILIES}
        if os.path.exists(path):
            try:
                existing = _read_cache(path)
            except ValueError as exc:
                if strict:
                    raise
                aside = _set_aside(path)
                warnings.warn(
                    f"gemlite.cache_config: {exc}; moved it to {aside} and wrote a new cache",
                    ConfigCacheWarning,
                    stacklevel=2,
                )
                existing = {}
            for family, entries in existing.items():
                merged[family].update({k: c.as_dict() for k, c in entries.items()})
        for family in FAMILIES:
            merged[family].update({k: c.as_dict() for k, c in _CACHE[family].items()})
        fd, tmp = tempfile.mkstemp(prefix=".gemlite-config-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(merged, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


def reset_config() -> None:
    """Forget every cached config (tuned, loaded or shipped). The shipped cache is not loaded again
    by itself afterwards (a reset asks for tuning); `load_shipped_configs()` loads it on purpose."""
    global _SHIPPED_STATE
    with _LOCK:
        for family in FAMILIES:
            _CACHE[family].clear()
        if _SHIPPED_STATE == "pending":
            _SHIPPED_STATE = "off"
    bump_generation()


# ------------------------------------------------------------------------------------------------
# The shipped caches: configs tuned by the perf suite on one GPU model (gemlite/configs/<key>.json)
# ------------------------------------------------------------------------------------------------

#: Exact CUDA device names (``torch.cuda.get_device_name``) -> the shipped cache tuned on that model.
#: Exact, never a substring: an "NVIDIA GH200 480GB" or an H100 PCIe (1.7x less bandwidth than the
#: SXM part) is another GPU whose winners differ, and gets no shipped cache.
SHIPPED_CONFIGS: dict[str, str] = {
    "NVIDIA H200": "h200",
    "NVIDIA H100 80GB HBM3": "h100-sxm",
}
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# "pending": load on the first config choice on a CUDA device; "done"; "off" (disabled or reset).
_SHIPPED_STATE = "off" if os.environ.get("GEMLITE_SHIPPED_CONFIGS", "1") == "0" else "pending"


def shipped_config_path(device_name: str) -> str | None:
    """The shipped cache file for a CUDA device name (exact match, see `SHIPPED_CONFIGS`), or None."""
    if not isinstance(device_name, str):
        raise TypeError(f"device_name: expected a str, got {type(device_name).__name__}")
    key = SHIPPED_CONFIGS.get(device_name)
    if key is None:
        return None
    path = os.path.join(SHIPPED_DIR, f"{key}.json")
    return path if os.path.isfile(path) else None


def use_shipped_configs(flag: bool) -> None:
    """Whether the first config choice on a CUDA device loads the shipped cache of that GPU model
    (default True; ``GEMLITE_SHIPPED_CONFIGS=0`` in the environment starts with False). False after a
    load leaves what was loaded in the cache (`reset_config` forgets it)."""
    global _SHIPPED_STATE
    if not isinstance(flag, bool):
        raise TypeError(f"flag: expected a bool, got {type(flag).__name__} {flag!r}")
    with _LOCK:
        if not flag:
            _SHIPPED_STATE = "off"
        elif _SHIPPED_STATE == "off":
            _SHIPPED_STATE = "pending"


def load_shipped_configs(device: torch.device | int | None = None) -> bool:
    """Merge the shipped cache of `device`'s GPU model into the process cache, under what is cached
    already (configs tuned here or loaded by `load_config` win). True when a file was loaded.

    Called by itself on the first config choice on a CUDA device while the autotune mode is "fast"
    (a "max" search or mode False asks for other configs than the fast space's tuned winners)."""
    global _SHIPPED_STATE
    with _LOCK:
        _SHIPPED_STATE = "done"
    if not torch.cuda.is_available():
        return False
    path = shipped_config_path(torch.cuda.get_device_name(device))
    if path is None:
        return False
    try:
        parsed = _read_cache(path)
    except (OSError, ValueError) as exc:  # a broken installation: warn, tune as without it
        warnings.warn(f"gemlite: shipped config cache not loaded: {exc}", ConfigCacheWarning, stacklevel=2)
        return False
    with _LOCK:
        for family, entries in parsed.items():
            for key, cfg in entries.items():
                _CACHE[family].setdefault(key, cfg)
    bump_generation()
    return True


def maybe_load_shipped(device: torch.device) -> None:
    """`load_shipped_configs(device)` once per process, on a CUDA device in mode "fast" (the hot
    path's first config choice calls this; afterwards it costs one comparison)."""
    if _SHIPPED_STATE == "pending" and device.type == "cuda" and _MODE == "fast":
        load_shipped_configs(device)
