"""Measuring suite cases: build the weights, warm up, time, record.

Two measurers share one interface (``start``, ``measure(case, pedantic=None)``, ``finish``, ``meta``):

* `GpuMeasurer`: the real thing. Builds each (format, K, N) once through gemlite's public helpers
  (``gemlite.helper.<HELPER>(device="cuda", dtype).from_linear(nn.Linear(K, N), **kwargs)``) and
  deep-copies the layer into enough rotating copies to defeat L2; builds the cuBLAS references from
  random fp16 / bf16 / e4m3 / int8 weights; times every M with `harness.timing.GraphTimer`; for a
  case of the suite's host subset, then times eager calls too (`eager_host_us`); measures the copy
  bandwidth once at start; loads and writes back the per-GPU tuned-config cache.
* `FakeMeasurer` (``--dry-run``): no GPU, no gemlite. Times come from a roofline model with seeded
  noise, so the whole pipeline (pytest, pytest-benchmark, results, gate, re-measure, A/B, reports)
  runs on a CPU and is unit-tested. Environment knobs, read only by the fake, plant effects to test
  the gate: ``GEMLITE_PERF_FAKE_SLOWDOWN="<substring>=<factor>,..."`` (every measurement of matching
  cases), ``GEMLITE_PERF_FAKE_TRANSIENT=...`` (only the first measurement of a case: noise that a
  re-measure must not confirm), ``GEMLITE_PERF_FAKE_ERROR=<substring>`` (the case errors), and the
  same two for the eager host time: ``GEMLITE_PERF_FAKE_HOST_SLOWDOWN``,
  ``GEMLITE_PERF_FAKE_HOST_TRANSIENT``.

Eager host time (the host subset): after the CUDA-graph timing, `eager_host_us` warms up, then makes
``RunSettings.host_calls`` back-to-back calls of the same layer (copy 0) on the same x with no sync
in between and one ``torch.cuda.synchronize()`` at the end: host_us = wall time / calls. Copy 0 on
one x keeps the weight in L2, so each call's GPU time (a few us at the host subset's 4096 x 4096)
stays under its host time and the queue of launches does not fill: what is measured is the host's
cost of a forward (Python, argument checks, launch), which is what the goal compares with
``torch.nn.functional.linear``. Where a kernel is slower than its host side, host_us is the kernel's
time instead; the report flags host times that are not clearly above the case's kernel time.

`PerfSession` runs a list of cases through a measurer, prints one progress line per case, enforces
an optional time budget and writes the raw results JSON after every case (a run killed by a time
limit keeps what it measured).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import gc
import importlib
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness import git
from harness.gpu import SPECS, GpuInfo
from harness.perf_cases import ROOT, Case, FormatEntry, case_bytes, case_flops
from harness.timing import (
    GraphTimer,
    Stats,
    TimingConfig,
    copy_bandwidth,
    gpu_state,
    rotation_copies,
    summarize,
)

__all__ = [
    "AUTOTUNE_MODES",
    "FakeMeasurer",
    "GpuMeasurer",
    "Measurement",
    "PerfSession",
    "eager_host_us",
    "RunSettings",
    "config_cache_path",
    "fake_gpu",
    "git_commit",
    "parse_factor_spec",
    "write_json_atomic",
]

AUTOTUNE_MODES = ("fast", "max", "off")
CONFIGS_DIR = ROOT / "gemlite" / "configs"  # the caches gemlite ships (gemlite.autotune.SHIPPED_CONFIGS)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """The outcome of timing one case.

    status: "ok" (timed), "skipped" (the product cannot run this case, `reason` says why), "error"
    (it raised; `reason` holds the error, `detail` the traceback), "not_run" (time budget spent).
    Times are per call in microseconds: us = median over replays, q1/q3 the quartiles.
    bytes / flops: the case's minimum HBM traffic and 2*M*N*K. warm_s: the first call (autotuning and
    compilation). build_s: building the weights and copies (charged to the first M of a shape).
    host_us: eager host time per call (cases of the host subset only, else None), over host_calls
    back-to-back calls.
    """

    case: Case
    status: str
    us: float | None = None
    q1_us: float | None = None
    q3_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    replays: int = 0
    calls_per_replay: int = 0
    n_copies: int = 0
    rotation_bytes: int = 0
    warm_s: float | None = None
    build_s: float | None = None
    host_us: float | None = None
    host_calls: int = 0
    samples_us: list[float] = field(default_factory=list)
    reason: str = ""
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def iqr_us(self) -> float | None:
        return None if self.q1_us is None or self.q3_us is None else self.q3_us - self.q1_us

    @property
    def rel_iqr(self) -> float | None:
        iqr = self.iqr_us
        return None if iqr is None or not self.us else iqr / self.us

    @property
    def bytes(self) -> int:
        return case_bytes(self.case)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, flop per byte of minimum traffic (the gate's compute-bound test)."""
        return case_flops(self.case) / case_bytes(self.case)

    @property
    def flops(self) -> int:
        return case_flops(self.case)

    @classmethod
    def from_stats(cls, case: Case, stats: Stats, samples: list[float], **kw) -> Measurement:
        return cls(
            case,
            "ok",
            us=stats.median,
            q1_us=stats.q1,
            q3_us=stats.q3,
            min_us=stats.min,
            max_us=stats.max,
            replays=stats.n,
            samples_us=list(samples),
            **kw,
        )

    def to_dict(self) -> dict:
        d = {
            "case_id": self.case_id,
            "case": self.case.to_dict(),
            "status": self.status,
            "us": self.us,
            "iqr_us": self.iqr_us,
            "q1_us": self.q1_us,
            "q3_us": self.q3_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
            "replays": self.replays,
            "calls_per_replay": self.calls_per_replay,
            "n_copies": self.n_copies,
            "rotation_bytes": self.rotation_bytes,
            "warm_s": self.warm_s,
            "build_s": self.build_s,
            "host_us": self.host_us,
            "host_calls": self.host_calls,
            "bytes": self.bytes,
            "flops": self.flops,
            "samples_us": self.samples_us,
            "reason": self.reason,
            "notes": self.notes,
        }
        if self.detail:
            d["detail"] = self.detail
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        keys = ("us", "q1_us", "q3_us", "min_us", "max_us", "warm_s", "build_s", "host_us")
        return cls(
            Case.from_dict(d["case"]),
            d["status"],
            **{k: d.get(k) for k in keys},
            replays=d.get("replays", 0),
            calls_per_replay=d.get("calls_per_replay", 0),
            n_copies=d.get("n_copies", 0),
            rotation_bytes=d.get("rotation_bytes", 0),
            host_calls=d.get("host_calls", 0),
            samples_us=list(d.get("samples_us", [])),
            reason=d.get("reason", ""),
            detail=d.get("detail", ""),
            notes=list(d.get("notes", [])),
        )


@dataclass(frozen=True)
class RunSettings:
    """How a run measures (shared by the CLI, the pytest plugin and A/B workers; JSON-serialisable).

    autotune: gemlite autotune mode, "fast" | "max" | "off" (off: gemlite.set_autotune(False), one
    heuristic config per kernel family). config_cache: use the per-GPU tuned-config file: load it at
    start (not with autotune "off", whose point is to use no tuned config) and write the tuned
    configs back (`writes_config_cache`: not with a forced config, and not when
    `write_config_cache` is False, as in A/B runs). force_config: {family: config kwargs} applied
    through ``gemlite.autotune.forced_config`` for the whole run: it wins over cached configs, so
    it plants a slowdown in that family while the others keep their tuned configs. dry_run: use
    `FakeMeasurer`. config_dir: where the tuned-config cache lives (None: this checkout's
    gemlite/configs/; an A/B run points the base side at the base revision's own, since a
    revision's cache holds the winners of ITS kernels' config spaces). retune_m: batch sizes whose
    cached entries are left out when the cache is loaded, so they are tuned again over today's space
    (a cache hit is never re-tuned: after a kernel or config-space change its keys keep their old
    winners); a run that writes the cache then replaces them, an A/B run tunes both sides afresh
    over their own spaces. host_calls: eager calls timed
    per case of the host subset (`eager_host_us`);
    10,000 by default (on the H200 machine, 2026-12-01: about 0.2 s for F.linear at ~18 us a call,
    1 s for a gemlite forward at ~90 us), ``--quick`` uses QUICK_HOST_CALLS.
    """

    timing: TimingConfig = field(default_factory=TimingConfig)
    autotune: str = "fast"
    config_cache: bool = True
    write_config_cache: bool = True
    force_config: dict | None = None
    dry_run: bool = False
    seed: int = 0
    host_calls: int = 10_000
    config_dir: str | None = None
    retune_m: tuple[int, ...] = ()

    QUICK_HOST_CALLS = 2_000

    def __post_init__(self) -> None:
        if self.autotune not in AUTOTUNE_MODES:
            raise ValueError(f"autotune: expected one of {AUTOTUNE_MODES}, got {self.autotune!r}")
        if self.force_config is not None and not isinstance(self.force_config, dict):
            raise TypeError(
                f"force_config: expected a dict {{family: config}}, got {type(self.force_config).__name__}"
            )
        if not isinstance(self.host_calls, int) or self.host_calls < 1:
            raise ValueError(f"host_calls: need at least one eager call, got {self.host_calls!r}")
        if not all(isinstance(m, int) and m >= 1 for m in self.retune_m):
            raise ValueError(f"retune_m: expected batch sizes >= 1, got {self.retune_m!r}")

    @property
    def loads_config_cache(self) -> bool:
        return self.config_cache and self.autotune != "off"

    @property
    def writes_config_cache(self) -> bool:
        return self.loads_config_cache and self.write_config_cache and not self.force_config

    def to_dict(self) -> dict:
        return {
            "timing": self.timing.to_dict(),
            "autotune": self.autotune,
            "config_cache": self.config_cache,
            "write_config_cache": self.write_config_cache,
            "force_config": self.force_config,
            "dry_run": self.dry_run,
            "seed": self.seed,
            "host_calls": self.host_calls,
            "config_dir": self.config_dir,
            "retune_m": list(self.retune_m),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunSettings:
        return cls(
            timing=TimingConfig(**d.get("timing", {})),
            autotune=d.get("autotune", "fast"),
            config_cache=d.get("config_cache", True),
            write_config_cache=d.get("write_config_cache", True),
            force_config=d.get("force_config"),
            dry_run=d.get("dry_run", False),
            seed=d.get("seed", 0),
            host_calls=d.get("host_calls", 10_000),
            config_dir=d.get("config_dir"),
            retune_m=tuple(d.get("retune_m", ())),
        )


def config_cache_path(key: str, mode: str, config_dir: str | Path | None = None) -> Path:
    """Per-GPU tuned-config cache: ``gemlite/configs/<key>.json`` ("fast", shipped in the package),
    ``<key>.max.json``
    (under `config_dir` instead when given)."""
    base = CONFIGS_DIR if config_dir is None else Path(config_dir)
    return base / (f"{key}.json" if mode == "fast" else f"{key}.{mode}.json")


def drop_cached_m(cache: dict, ms: set[int]) -> int:
    """Remove a config cache's entries (``{family: {"M=<m>,...": config}}``) of batch sizes `ms`, in
    place; the number removed."""
    dropped = 0
    for entries in cache.values():
        for key in [k for k in entries if int(k.split(",", 1)[0].removeprefix("M=")) in ms]:
            del entries[key]
            dropped += 1
    return dropped


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it, else as given."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to `path` through a temporary file and a rename, so a reader (or a run killed
    mid-write) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def git_commit(root: Path = ROOT) -> tuple[str, bool | None]:
    """(commit sha, dirty) of the working tree, read-only git; ("unknown", None) without git.

    GEMLITE_PERF_COMMIT overrides the sha (a GPU machine may get the tree without .git)."""
    return git.commit(root)


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for mod in ("torch", "triton"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing module is just "unknown" in the metadata
            out[mod] = "unknown"
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# The real measurer
# --------------------------------------------------------------------------------------------


class _Built:
    """Weights of one (kind, name, K, N) in `n` rotating copies, and how to call copy i on x.

    eager(x) -> (fn, args): the plain call of copy 0 on x that the eager host time repeats as
    ``fn(*args)`` (the layer itself, ``F.linear`` with its weight), without the rotation's indexing;
    None: ``call(0, x)``. describe(x) -> str | None: what copy 0 launches for x (gemlite: the kernel
    family and config, recorded in the measurement's notes), None where there is nothing to say.
    """

    def __init__(
        self,
        copies: list,
        bytes_per_copy: int,
        inputs: Callable[[int], object],
        call: Callable[[int, object], object],
        compare_copies: bool,
        build_s: float,
        eager: Callable[[object], tuple[Callable, tuple]] | None = None,
        describe: Callable[[object], str | None] | None = None,
    ) -> None:
        self.eager = eager or (lambda x: (call, (0, x)))
        self.describe = describe or (lambda x: None)
        self.copies = copies
        self.n = len(copies)
        self.bytes_per_copy = bytes_per_copy
        self.inputs = inputs
        self.call = call
        self.compare_copies = compare_copies
        self.build_s = build_s
        self.build_s_charged = False


def build_layer(entry: FormatEntry, K: int, N: int, device: str):
    """The suite entry's gemlite layer at K x N: random weights (nn.Linear's own init, uniform
    +-1/sqrt(K): non-zero), quantized by the entry's helper. Raises RuntimeError for a helper that
    gemlite.helper lacks (an A/B base revision older than the format)."""
    import torch

    import gemlite.helper as helper

    proc_cls = getattr(helper, entry.helper, None)
    if proc_cls is None:
        raise RuntimeError(f"gemlite.helper has no {entry.helper!r} (suite entry {entry.label})")
    dtype = getattr(torch, entry.act_dtype)
    linear = torch.nn.Linear(K, N, bias=False, dtype=dtype, device=device)
    return proc_cls(device=device, dtype=dtype, **entry.init).from_linear(linear, **entry.kwargs)


def launch_choice_of(layer, x) -> str | None:
    """The "FAMILY BM.._BN.._..." that a gemlite layer launches for x (after its first call: no tuning
    here); None for a revision without `gemlite.matmul.launch_choice` (an A/B base) or a layer
    without the usual tensors."""
    try:
        from gemlite import matmul as gm

        choice = getattr(gm, "launch_choice", None)
        if choice is None:
            return None
        b = layer._buffers
        family, config = choice(
            x, b["W_q"], b["scales"], b["zeros"], b.get("bias"), layer.layout, layer._out_dtype,
            locks=b.get("_locks"),
        )  # fmt: skip
        return f"{family} {config.short()}"
    except Exception as e:  # noqa: BLE001 - a description, never a reason to fail the case
        return f"unknown ({type(e).__name__}: {e})"


def _tensor_bytes(module) -> int:
    """Bytes held by a module's parameters and buffers (each storage counted once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t is None:
            continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def eager_host_us(fn: Callable, args: tuple, calls: int, sync: Callable[[], None]) -> float:
    """Eager host time per call of ``fn(*args)``, in us (see the module docstring).

    Warms up with calls // 10 calls (at least one) and a sync, then times `calls` back-to-back calls
    and one `sync` at the end with ``time.perf_counter``: nothing waits for the GPU in between, so
    the time is what the host spends per call as long as the GPU keeps up. Outputs are dropped as
    they come (the caching allocator hands the same block back).

    NOTE: the garbage collector is off during the timed calls, as ``timeit`` does. A forward
    allocates Python objects that trigger collections, and a full collection walks every object of
    the process (torch, Triton, pytest, the harness): its cost depends on what else the process
    holds, not on the forward. With it on, A16W4_HQQ_INT/g128 4096x4096 M=1 measured 92-174 us
    (F.linear 17-26 us) in 24 rounds of 2,000 calls on the H200 machine; with it off, 89-99 us
    (17.1-18.1 us) in 12 (2026-12-01). The machine's own drift remains (harness/baselines.py).
    """
    for _ in range(max(1, calls // 10)):
        fn(*args)
    sync()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        sync()
        return (time.perf_counter() - t0) * 1e6 / calls
    finally:
        if enabled:
            gc.enable()


_FATAL_MARKERS = ("illegal memory access", "unspecified launch failure", "device-side assert", "CUDA error")


class _WallTimer:
    """GraphTimer's interface with a host clock, for ``GpuMeasurer(device="cpu")``: the unit tests
    run the real measurer's build / warm-up / check path through the Triton interpreter with it."""

    def __init__(self, call: Callable[[int], object], n_copies: int, cfg: TimingConfig) -> None:
        self.call, self.n_copies, self.cfg = call, n_copies, cfg
        self.calls = n_copies
        self.samples: list[float] = []
        self.notes = ["host wall clock (CPU smoke, not a GPU timing)"]

    def prepare(self) -> None:
        self.samples.clear()

    def replay(self) -> float:
        t0 = time.perf_counter()
        for j in range(self.calls):
            self.call(j % self.n_copies)
        us = (time.perf_counter() - t0) * 1e6 / self.calls
        self.samples.append(us)
        return us

    def close(self) -> None:
        pass


class GpuMeasurer:
    """Times cases on the CUDA GPU described by `gpu` (see the module docstring).

    device: "cuda" (the real thing), or "cpu" for tests only: tensors on the CPU (gemlite then
    needs TRITON_INTERPRET=1), a host-clock timer instead of CUDA graphs, no copy bandwidth.

    Raises RuntimeError from `start` when gemlite cannot be imported or an autotune setting cannot be
    applied through its public API. `measure` never raises for a case: failures come back as a
    Measurement with status "error". After an error that poisons the CUDA context (illegal address,
    device assert) every later case errors at once, naming the first failure.
    """

    def __init__(
        self, settings: RunSettings, gpu: GpuInfo, log: Callable[[str], None] = print, device: str = "cuda"
    ) -> None:
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device: expected 'cuda' or 'cpu' (tests), got {device!r}")
        self.settings = settings
        self.gpu = gpu
        self.log = log
        self.device = device
        self.copy_stats: Stats | None = None
        self.state_start: dict = {}
        self.state_end: dict = {}
        self.cache_path: Path | None = None
        self.cache_note = ""
        self._built_key = None
        self._built: _Built | None = None
        self._fatal = ""
        self._failed_build: tuple = (None, "")
        self._tuning = False
        self._stack = contextlib.ExitStack()
        self._gemlite = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        import torch

        torch.manual_seed(self.settings.seed)
        try:
            import gemlite
        except Exception as e:
            raise RuntimeError(
                f"cannot import gemlite ({type(e).__name__}: {e}); is the repo on PYTHONPATH?"
            ) from e
        self._gemlite = gemlite
        self.log(f"gemlite from {Path(gemlite.__file__).parent}")
        # The run loads its cache file itself (below: this checkout's, the A/B base's own, or none);
        # gemlite's own loading of its shipped cache would bypass that choice.
        try:
            use_shipped = importlib.import_module("gemlite.autotune").use_shipped_configs
        except (ImportError, AttributeError):  # an older revision (A/B base): it ships none
            use_shipped = None
        if use_shipped is not None:
            use_shipped(False)
        mode = self.settings.autotune
        gemlite.set_autotune(False if mode == "off" else mode)
        if self.settings.force_config:
            self._apply_forced_configs(self.settings.force_config)
        if self.settings.loads_config_cache:
            self.cache_path = config_cache_path(self.gpu.key, mode, self.settings.config_dir)
            if self.cache_path.exists():
                try:
                    # Today's gemlite returns False (and warns) for a file it cannot load; older
                    # revisions (A/B) return None and raise.
                    if self.settings.retune_m:
                        self._load_cache_without(gemlite, self.settings.retune_m)
                    elif gemlite.load_config(str(self.cache_path)) is False:
                        raise ValueError("gemlite.load_config returned False (see its warning)")
                    else:
                        self.cache_note = f"loaded {_shown(self.cache_path)}"
                except Exception as e:  # noqa: BLE001 - a stale cache must not stop the run
                    self.cache_note = (
                        f"could not load {self.cache_path.name} ({type(e).__name__}: {e}); autotuning"
                    )
            else:
                self.cache_note = f"no {_shown(self.cache_path)} yet: autotuning from scratch"
        else:
            self.cache_note = "config cache not used (autotune off or --no-config-cache)"
        if self.cache_path is not None and not self.settings.writes_config_cache:
            self.cache_note += " (read only this run)"
        self.log(f"autotune: {mode}; {self.cache_note}")
        if self.device == "cpu":
            return
        self.state_start = gpu_state()
        self.log("measuring copy bandwidth (1 GiB device-to-device copy) ...")
        self.copy_stats = copy_bandwidth()
        self.log(
            f"copy bandwidth: {self.copy_stats.median:.0f} GB/s (read + write), "
            f"IQR {self.copy_stats.iqr:.0f} GB/s; GPU state {self.state_start or 'n/a'}"
        )

    def _load_cache_without(self, gemlite, ms: tuple[int, ...]) -> None:
        """Load the cache file less its entries of batch sizes `ms` (through a filtered copy: any
        revision's `load_config` reads it)."""
        cache = json.loads(self.cache_path.read_text(encoding="utf-8"))
        dropped = drop_cached_m(cache, set(ms))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / self.cache_path.name
            path.write_text(json.dumps(cache), encoding="utf-8")
            if gemlite.load_config(str(path)) is False:
                raise ValueError("gemlite.load_config returned False (see its warning)")
        self.cache_note = (
            f"loaded {_shown(self.cache_path)} less its {dropped} entries of M in {sorted(ms)} (re-tuned)"
        )

    def _apply_forced_configs(self, forced: dict) -> None:
        try:
            from gemlite import autotune
        except Exception as e:
            raise RuntimeError(f"force_config: cannot import gemlite.autotune ({e})") from e
        fn = getattr(autotune, "forced_config", None)
        if fn is None:
            raise RuntimeError(
                "force_config: gemlite.autotune has no forced_config(family, config) context manager; "
                "use --autotune off to plant a slowdown instead"
            )
        for family, cfg in forced.items():
            self._stack.enter_context(fn(family, cfg))
            self.log(f"forced config for {family}: {cfg}")

    def save_config_cache(self) -> None:
        """Write the tuned configs back (merging with the file), if this run uses the cache."""
        if self.cache_path is None or not self.settings.writes_config_cache or self._gemlite is None:
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self._gemlite.cache_config(str(self.cache_path))
        except Exception as e:  # noqa: BLE001 - losing the cache costs time, not correctness
            self.log(f"warning: could not write {self.cache_path} ({type(e).__name__}: {e})")

    def finish(self) -> None:
        self.save_config_cache()
        self._drop_built()
        self._stack.close()
        if self.device == "cuda":
            self.state_end = gpu_state()

    def meta(self) -> dict:
        return {
            "gpu": self.gpu.name,
            "gpu_key": self.gpu.key,
            "gpu_info": self.gpu.to_dict(),
            "copy_gbps": self.copy_stats.median if self.copy_stats else None,
            "copy_iqr_gbps": self.copy_stats.iqr if self.copy_stats else None,
            "gpu_state_start": self.state_start,
            "gpu_state_end": self.state_end,
            "config_cache": self.cache_note,
        }

    # -- building -------------------------------------------------------------------------------

    def _drop_built(self) -> None:
        if self._built is not None:
            import torch

            self._built = None
            self._built_key = None
            gc.collect()
            if self.device == "cuda":
                torch.cuda.empty_cache()

    def _get_built(self, case: Case) -> _Built:
        # The build key carries the mode: tune() builds one copy, measure() the full rotation.
        key = (*case.build_key, self._tuning)
        if self._built_key != key:
            if self._built is not None and self._built_key[0] == "gemlite":
                self.save_config_cache()  # a killed run keeps the configs tuned so far
            self._drop_built()
            if self._failed_build[0] == key:  # the other M of a shape that failed to build
                raise RuntimeError(f"building the weights failed earlier: {self._failed_build[1]}")
            t0 = time.perf_counter()
            try:
                built = self._build_gemlite(case) if case.kind == "gemlite" else self._build_ref(case)
            except Exception as e:
                self._failed_build = (key, f"{type(e).__name__}: {e}")
                raise
            built.build_s = time.perf_counter() - t0
            self._built, self._built_key = built, key
        return self._built

    def _n_copies(self, bytes_per_copy: int) -> int:
        if self._tuning:
            return 1
        return rotation_copies(bytes_per_copy, self.gpu.l2_bytes, self.settings.timing)

    def tune(self, case: Case) -> Measurement:
        """Only the first call of a gemlite case (autotuning and compilation): no copies, no timing.

        Returns status "ok" with `warm_s` set (us stays None), or "error". The point is to fill the
        config cache in a run of its own, so a later timed run fits its time budget.
        """
        import torch

        self._tuning = True
        try:
            built = self._get_built(case)
            build_s = None if built.build_s_charged else built.build_s
            built.build_s_charged = True
            x = built.inputs(case.M)
            t0 = time.perf_counter()
            built.call(0, x)
            if self.device == "cuda":
                torch.cuda.synchronize()
            return Measurement(case, "ok", warm_s=time.perf_counter() - t0, build_s=build_s)
        except Exception as e:  # noqa: BLE001 - reported per case, like measure()
            return Measurement(
                case, "error", reason=f"{type(e).__name__}: {e}", detail=traceback.format_exc(limit=8)
            )

    def _seed(self, case: Case) -> int:
        return zlib.crc32(f"{self.settings.seed}|{case.name}|{case.K}x{case.N}".encode())

    def _build_gemlite(self, case: Case) -> _Built:
        import torch

        entry = case.entry
        dtype = getattr(torch, entry.act_dtype)
        torch.manual_seed(self._seed(case))
        layer = build_layer(entry, case.K, case.N, self.device)
        fmt = getattr(layer, "format", None)
        if fmt is not None and getattr(fmt, "label", entry.label) != entry.label:
            raise RuntimeError(
                f"{entry.helper}(...).from_linear built {fmt.label}, but the suite says {entry.label}"
            )
        deterministic = True
        try:
            deterministic = bool(self._gemlite.is_deterministic())
        except Exception:  # noqa: BLE001 - older revisions may lack it; assume the default
            pass
        return self._rotating(case, layer, dtype, deterministic, describe=partial(launch_choice_of, layer))

    def _rotating(self, case: Case, layer, dtype, compare_copies: bool, describe: Callable) -> _Built:
        """`layer` and enough deep copies of it to defeat L2, called on x of `dtype` [M, K]; copy 0's
        ``__call__`` is what the eager host time repeats. The peer's measurer (`harness.peer`) wraps
        the layers it builds through the public GemLite release here too."""
        import torch

        nbytes = _tensor_bytes(layer)
        n = self._n_copies(nbytes)
        copies = [layer] + [copy.deepcopy(layer) for _ in range(n - 1)]

        def inputs(M: int):
            return torch.randn(M, case.K, dtype=dtype, device=self.device)

        def call(i: int, x):
            return copies[i](x)

        def eager(x):
            return copies[0], (x,)  # a forward, as a model calls it: the module's __call__

        return _Built(
            copies, nbytes, inputs, call, compare_copies=compare_copies, build_s=0.0, eager=eager,
            describe=describe,
        )  # fmt: skip

    def _build_ref(self, case: Case) -> _Built:
        # Copies are not compared bitwise here: cuBLAS may pick another algorithm per call, and the
        # check exists for gemlite's deep-copied layers, not for plain tensors.
        import torch
        import torch.nn.functional as F

        K, N = case.K, case.N
        dev = self.device
        gen = torch.Generator(device=dev).manual_seed(self._seed(case))
        name = case.name
        if name in ("cublas_fp16", "cublas_bf16"):
            dtype = torch.float16 if name == "cublas_fp16" else torch.bfloat16
            w = torch.randn(N, K, generator=gen, device=dev, dtype=dtype) * (K**-0.5)
            n = self._n_copies(w.numel() * w.element_size())
            copies = [w] + [w.clone() for _ in range(n - 1)]

            def inputs(M: int):
                return torch.randn(M, K, generator=gen, device=dev, dtype=dtype)

            def call(i: int, x):
                return F.linear(x, copies[i])

            def eager(x):
                return F.linear, (x, copies[0])

            return _Built(copies, w.numel() * w.element_size(), inputs, call, False, 0.0, eager)

        if name == "cublas_fp8_scaled_mm":
            e4m3 = torch.float8_e4m3fn
            wf = torch.randn(N, K, generator=gen, device=dev)
            sw = wf.abs().amax(dim=1).clamp(min=1e-6) / 448.0
            w8 = (wf / sw[:, None]).clamp(-448, 448).to(e4m3)
            scale_b = sw.view(1, N).float().contiguous()
            del wf
            n = self._n_copies(w8.numel())
            copies = [w8] + [w8.clone() for _ in range(n - 1)]

            def inputs(M: int):
                xf = torch.randn(M, K, generator=gen, device=dev)
                sx = xf.abs().amax(dim=1).clamp(min=1e-6) / 448.0
                x8 = (xf / sx[:, None]).clamp(-448, 448).to(e4m3)
                return x8, sx.view(M, 1).float().contiguous()

            def call(i: int, inp):
                x8, scale_a = inp
                # mat2 column-major ([N, K] row-major, transposed), as cuBLASLt's fp8 GEMM wants.
                out = torch._scaled_mm(
                    x8, copies[i].t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16
                )
                return out[0] if isinstance(out, tuple) else out

            return _Built(copies, w8.numel(), inputs, call, False, 0.0)

        if name == "cublas_int8_int_mm":
            w = torch.randint(-128, 128, (N, K), generator=gen, device=dev, dtype=torch.int8)
            n = self._n_copies(w.numel())
            copies = [w] + [w.clone() for _ in range(n - 1)]

            def inputs(M: int):
                return torch.randint(-128, 128, (M, K), generator=gen, device=dev, dtype=torch.int8)

            def call(i: int, x):
                return torch._int_mm(x, copies[i].t())

            return _Built(copies, w.numel(), inputs, call, False, 0.0)

        raise RuntimeError(f"unknown reference {name!r}")

    # -- measuring ------------------------------------------------------------------------------

    def skip_reason(self, case: Case) -> str:
        """Why a reference cannot run this case ("" if it can)."""
        if case.name == "cublas_int8_int_mm" and (case.M <= 16 or case.K % 8 or case.N % 8):
            return f"torch._int_mm needs M > 16 and K, N multiples of 8 (M={case.M}, K={case.K}, N={case.N})"
        if case.name == "cublas_fp8_scaled_mm" and self.gpu.cc < (8, 9):
            return f"torch._scaled_mm fp8 needs compute capability >= 8.9 (this GPU: {self.gpu.cc})"
        return ""

    def _check_output(self, case: Case, out, built: _Built, x) -> None:
        import torch

        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (case.M, case.N):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"output: expected shape ({case.M}, {case.N}), got {shape}")
        f = out.float()
        if not bool(torch.isfinite(f).all()):
            raise RuntimeError("output: contains NaN or Inf on random data")
        if not bool((f != 0).any()):
            raise RuntimeError("output: all zeros on random, non-zero data")
        if built.compare_copies and built.n > 1:
            other = built.call(built.n - 1, x)
            if not torch.equal(out, other):
                raise RuntimeError("copies: copy 0 and the last copy of the weights gave different outputs")

    def measure(self, case: Case, pedantic: Callable | None = None) -> Measurement:
        """Time `case`; never raises (see the class docstring).

        pedantic: pytest-benchmark's ``benchmark.pedantic``; when given, the timed replays run through
        it (so pytest-benchmark records their wall time) while CUDA events give the numbers we keep.
        """
        import torch

        if self._fatal:
            return Measurement(case, "error", reason=f"CUDA context lost earlier: {self._fatal}")
        self._tuning = False
        reason = self.skip_reason(case)
        if reason:
            return Measurement(case, "skipped", reason=reason)
        timer = None
        try:
            built = self._get_built(case)
            build_s = None
            if not built.build_s_charged:
                build_s, built.build_s_charged = built.build_s, True
            x = built.inputs(case.M)
            t0 = time.perf_counter()
            out = built.call(0, x)  # autotuning and compilation happen here, outside any graph
            if self.device == "cuda":
                torch.cuda.synchronize()
            warm_s = time.perf_counter() - t0
            self._check_output(case, out, built, x)
            del out
            launched = built.describe(x)
            timer_cls = GraphTimer if self.device == "cuda" else _WallTimer
            timer = timer_cls(lambda i: built.call(i, x), built.n, self.settings.timing)
            timer.prepare()
            replays = self.settings.timing.replays
            if pedantic is not None:
                pedantic(timer.replay, rounds=replays, iterations=1, warmup_rounds=0)
            else:
                for _ in range(replays):
                    timer.replay()
            stats = summarize(timer.samples)
            samples, calls, notes = list(timer.samples), timer.calls, list(timer.notes)
            if launched:
                notes.append(f"launch: {launched}")
            timer.close()  # the graph's memory goes before the eager calls
            timer = None
            host_us, host_calls = None, 0
            if case.host:
                host_calls = self.settings.host_calls
                sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
                fn, args = built.eager(x)
                host_us = eager_host_us(fn, args, host_calls, sync)
            return Measurement.from_stats(
                case,
                stats,
                samples,
                calls_per_replay=calls,
                n_copies=built.n,
                rotation_bytes=built.n * built.bytes_per_copy,
                warm_s=warm_s,
                build_s=build_s,
                host_us=host_us,
                host_calls=host_calls,
                notes=notes,
            )
        except Exception as e:  # noqa: BLE001 - a failing case is a result, not the end of the run
            msg = f"{type(e).__name__}: {e}"
            if any(m in msg for m in _FATAL_MARKERS):
                self._fatal = msg
            return Measurement(case, "error", reason=msg, detail=traceback.format_exc(limit=8))
        finally:
            if timer is not None:
                timer.close()


# --------------------------------------------------------------------------------------------
# The fake measurer (--dry-run)
# --------------------------------------------------------------------------------------------


def parse_factor_spec(spec: str | None) -> list[tuple[str, float]]:
    """Parse ``"<substring>=<factor>,..."`` (a case matches when the substring is in its case_id).

    Raises ValueError naming the bad item. Empty or None gives [].
    """
    out = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        sub, sep, val = item.rpartition("=")
        try:
            factor = float(val)
        except ValueError:
            factor = float("nan")
        if not sep or not sub or not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"expected '<case substring>=<positive factor>', got {item!r}")
        out.append((sub, factor))
    return out


def _factor(spec: list[tuple[str, float]], case: Case) -> float:
    """The product of the factors in `spec` whose substring is in the case's id."""
    out = 1.0
    for sub, f in spec:
        if sub in case.case_id:
            out *= f
    return out


def fake_gpu(expected: str) -> GpuInfo:
    """A GpuInfo for --dry-run: the first GPU the ``--gpu`` value accepts, with datasheet facts."""
    from harness.gpu import ACCEPTS

    key = ACCEPTS[expected][0]
    names = {
        "h100-sxm": "NVIDIA H100 80GB HBM3",
        "h100-pcie": "NVIDIA H100 PCIe",
        "h100-nvl": "NVIDIA H100 NVL",
        "h200": "NVIDIA H200",
        "h200-nvl": "NVIDIA H200 NVL",
    }
    spec = SPECS[key]
    return GpuInfo(names[key] + " (dry run)", key, 132, spec.l2_bytes, 80 * 2**30, "dry-run", (9, 0))


class FakeMeasurer:
    """Synthetic timings for --dry-run (see the module docstring). No GPU and no gemlite needed."""

    OVERHEAD_US = 2.0
    NOISE = 0.004  # relative standard deviation of one replay
    # Model eager host times per call (gemlite / F.linear = 1.33, inside the 1.5x goal) and their
    # run-to-run spread.
    HOST_US = {"gemlite": 8.0, "ref": 6.0}
    HOST_NOISE = 0.02

    def __init__(self, settings: RunSettings, gpu: GpuInfo, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.gpu = gpu
        self.log = log
        spec = SPECS[gpu.key]
        self.copy_gbps = 0.9 * spec.hbm_gbps
        self.tflops = 0.8 * spec.fp16_tflops
        self.slow = parse_factor_spec(os.environ.get("GEMLITE_PERF_FAKE_SLOWDOWN"))
        self.transient = parse_factor_spec(os.environ.get("GEMLITE_PERF_FAKE_TRANSIENT"))
        self.error = os.environ.get("GEMLITE_PERF_FAKE_ERROR", "")
        self.host_slow = parse_factor_spec(os.environ.get("GEMLITE_PERF_FAKE_HOST_SLOWDOWN"))
        self.host_transient = parse_factor_spec(os.environ.get("GEMLITE_PERF_FAKE_HOST_TRANSIENT"))
        self._attempts: dict[str, int] = {}
        self.copy_stats = Stats(
            self.copy_gbps,
            self.copy_gbps * 0.999,
            self.copy_gbps * 1.001,
            self.copy_gbps * 0.998,
            self.copy_gbps * 1.002,
            10,
        )

    def start(self) -> None:
        cache = _shown(config_cache_path(self.gpu.key, self.settings.autotune, self.settings.config_dir))
        self.log(
            f"DRY RUN: synthetic timings, no GPU ({self.gpu.name}); copy bandwidth "
            f"{self.copy_gbps:.0f} GB/s; config cache (not read) {cache}"
        )

    def finish(self) -> None:
        pass

    def save_config_cache(self) -> None:
        pass

    def meta(self) -> dict:
        return {
            "gpu": self.gpu.name,
            "gpu_key": self.gpu.key,
            "gpu_info": self.gpu.to_dict(),
            "copy_gbps": self.copy_gbps,
            "copy_iqr_gbps": self.copy_gbps * 0.002,
            "gpu_state_start": {},
            "gpu_state_end": {},
            "config_cache": "dry run",
        }

    def skip_reason(self, case: Case) -> str:
        if case.name == "cublas_int8_int_mm" and (case.M <= 16 or case.K % 8 or case.N % 8):
            return f"torch._int_mm needs M > 16 and K, N multiples of 8 (M={case.M}, K={case.K}, N={case.N})"
        return ""

    def measure(self, case: Case, pedantic: Callable | None = None) -> Measurement:
        reason = self.skip_reason(case)
        if reason:
            return Measurement(case, "skipped", reason=reason)
        if self.error and self.error in case.case_id:
            return Measurement(case, "error", reason="RuntimeError: planted by GEMLITE_PERF_FAKE_ERROR")
        attempt = self._attempts.get(case.case_id, 0)
        self._attempts[case.case_id] = attempt + 1
        floor_us = max(case_bytes(case) / (self.copy_gbps * 1e3), case_flops(case) / (self.tflops * 1e6))
        factor = _factor(self.slow, case) * (_factor(self.transient, case) if attempt == 0 else 1.0)
        rng = random.Random(zlib.crc32(f"{self.settings.seed}|{case.case_id}|{attempt}".encode()))
        base = (floor_us + self.OVERHEAD_US) * factor
        samples = [base * (1.0 + rng.gauss(0.0, self.NOISE)) for _ in range(self.settings.timing.replays)]
        if pedantic is not None:
            it = iter(samples)
            pedantic(lambda: next(it), rounds=len(samples), iterations=1, warmup_rounds=0)
        host_us, host_calls = None, 0
        if case.host:
            host_factor = _factor(self.host_slow, case) * (
                _factor(self.host_transient, case) if attempt == 0 else 1
            )
            host_calls = self.settings.host_calls
            host_us = self.HOST_US[case.kind] * host_factor * (1.0 + rng.gauss(0.0, self.HOST_NOISE))
        return Measurement.from_stats(
            case,
            summarize(samples),
            samples,
            calls_per_replay=1,
            n_copies=2,
            warm_s=0.0,
            build_s=0.0,
            host_us=host_us,
            host_calls=host_calls,
        )


# --------------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------------


class PerfSession:
    """Runs cases through a measurer: progress lines, a time budget, results written as it goes.

    Args:
        cases: in run order. measurer: a GpuMeasurer or FakeMeasurer, already started.
        meta: run metadata (gpu, versions, commit, suite, settings...) stored with the results.
        results_path: the raw results JSON, rewritten every WRITE_EVERY_S seconds and by `write`.
        deadline: time.monotonic() value after which remaining cases are "not_run".
        log: where progress lines go.
    """

    WRITE_EVERY_S = 15.0

    def __init__(
        self,
        cases: list[Case],
        measurer,
        meta: dict,
        results_path: Path,
        deadline: float | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cases = cases
        self.measurer = measurer
        self.meta = meta
        self.results_path = Path(results_path)
        self.deadline = deadline
        self.log = log
        self.results: dict[str, Measurement] = {}
        self.t_start = time.monotonic()
        self._last_write = float("-inf")
        self.index = {c.case_id: i for i, c in enumerate(cases)}

    def run_case(self, case: Case, pedantic: Callable | None = None) -> Measurement:
        """Measure one case (or mark it not_run past the deadline), record it, print progress."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            m = Measurement(case, "not_run", reason="time budget (--max-minutes) spent")
        else:
            m = self.measurer.measure(case, pedantic=pedantic)
        self.results[case.case_id] = m
        # Rewriting the whole file after every case would cost O(cases^2) time; every 15 s bounds
        # what a killed run loses. The caller writes once more at the end.
        if time.monotonic() - self._last_write > self.WRITE_EVERY_S:
            self.write()
        if m.status != "not_run":
            self.log(self.progress_line(m))
        return m

    def progress_line(self, m: Measurement) -> str:
        done = len(self.results)
        total = len(self.cases)
        elapsed = time.monotonic() - self.t_start
        left = elapsed / done * (total - done) if done else 0.0
        c = m.case
        head = f"[{done:>4}/{total} {_mmss(elapsed)} ~{_mmss(left)} left] {c.name} {c.K}x{c.N} M={c.M}"
        if m.status != "ok":
            return f"{head}: {m.status.upper()} {m.reason}"
        gbps = m.bytes / (m.us * 1e3)
        copy_gbps = self.meta.get("copy_gbps") or 0
        parts = [f"{m.us:9.2f} us (IQR {100 * (m.rel_iqr or 0):.1f}%)", f"{gbps:6.0f} GB/s"]
        if copy_gbps:
            parts.append(f"{100 * gbps / copy_gbps:3.0f}% copy")
        fp16 = self.results.get(f"cublas_fp16 {m.case.K}x{m.case.N} M{m.case.M}")
        if m.case.kind == "gemlite" and fp16 is not None and fp16.status == "ok":
            parts.append(f"{fp16.us / m.us:5.2f}x cuBLAS fp16")
        if m.host_us is not None:
            host = f"eager host {m.host_us:.2f} us"
            if m.case.kind == "gemlite" and fp16 is not None and fp16.host_us:
                host += f" ({m.host_us / fp16.host_us:.2f}x F.linear's)"
            parts.append(host)
        if m.warm_s and m.warm_s > 1.0:
            parts.append(f"warm {m.warm_s:.1f}s")
        if m.build_s and m.build_s > 1.0:
            parts.append(f"build {m.build_s:.1f}s")
        return f"{head}: " + " | ".join(parts)

    def measurements(self) -> list[Measurement]:
        """Recorded measurements in run order."""
        return sorted(self.results.values(), key=lambda m: self.index.get(m.case_id, 1 << 30))

    def write(self) -> None:
        self._last_write = time.monotonic()
        write_json_atomic(
            self.results_path, {"meta": self.meta, "measurements": [m.to_dict() for m in self.measurements()]}
        )

    def time_summary(self) -> str:
        ms = self.measurements()
        build = sum(m.build_s or 0 for m in ms)
        warm = sum(m.warm_s or 0 for m in ms)
        wall = time.monotonic() - self.t_start
        counts: dict[str, int] = {}
        for m in ms:
            counts[m.status] = counts.get(m.status, 0) + 1
        c = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        return (
            f"{len(ms)} cases ({c}) in {_mmss(wall)}: building weights {build:.0f} s, "
            f"first calls (autotune + compile) {warm:.0f} s, "
            f"timing and the rest {max(0.0, wall - build - warm):.0f} s"
        )


def _mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def load_results(path: Path) -> tuple[dict, list[Measurement]]:
    """Read a raw results JSON written by `PerfSession`: (meta, measurements)."""
    raw = json.loads(Path(path).read_text())
    return raw["meta"], [Measurement.from_dict(d) for d in raw["measurements"]]


def base_meta(gpu: GpuInfo, suite_name: str, settings: RunSettings, quick: bool, selection: dict) -> dict:
    """Metadata every results/baseline/report file starts from."""
    sha, dirty = git_commit()
    return {
        "gpu": gpu.name,
        "gpu_key": gpu.key,
        "driver": gpu.driver,
        **_versions(),
        "commit": sha,
        "dirty": dirty,
        "date": _now(),
        "suite": suite_name,
        "quick": quick,
        "selection": selection,
        "settings": settings.to_dict(),
        "dry_run": settings.dry_run,
        "env": {
            k: os.environ.get(k)
            for k in ("TRITON_DEFAULT_FP_FUSION", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
    }
