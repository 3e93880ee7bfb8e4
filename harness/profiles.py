"""Correctness profiles: how many cases the suite draws, how large, and how hypothesis runs them.

A profile is chosen once per pytest process (by `harness.pytest_plugin`, from ``--correctness-profile``
or the device found) and read back with `current()`:

=========  ======================================================================================
quick      the fast CPU subset (``nox -s tests``, plain ``pytest``, the mutation session): a few
           derandomized examples per format x kernel family, interpreter-sized shapes.
cpu        ``nox -s correctness`` on a CPU machine: the same shapes, more examples (~10 min on 2 cores).
gpu        ``nox -s correctness`` on a GPU: real shapes (K, N up to 8192, M up to 4096), derandomized.
thorough   nightly: many more examples, random (not derandomized), failures shrunk to a minimal case.
=========  ======================================================================================

Shapes stay small under the Triton interpreter because every program of the grid runs in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings


@dataclass(frozen=True)
class Profile:
    """How much and how large the correctness suite draws.

    name: the profile's name (a key of PROFILES).
    examples: hypothesis max_examples per test (one test = one format x one kernel family).
    max_M, max_K, max_N: the largest batch, reduction and output sizes drawn.
    large_sizes: extra "real model" sizes K and N may take (GPU profiles), each clipped to max_K/max_N.
    derandomize: draw the same cases on every run (stable verdicts, no example database).
    shrink: shrink a failing case to a minimal one (costly under the interpreter, so off on CPU).
    work_budget: per kernel family, the largest M * N * K a case may have (`harness.strategies.fit_to_family`
        shrinks M, then N, to fit). Under the Triton interpreter every program of the grid runs in
        Python, and the GEMV families launch one program per (row, N block, K block): at M=17, N=192,
        K=512 a GEMV takes 12 s where GEMM takes 0.7 s. Empty on GPU.
    autotune: the gemlite autotune mode the cases run under (``gemlite.set_autotune``): False uses each
        family's default config (every drawn shape would otherwise be timed on first use, a few
        seconds each); "fast" also exercises the configs the autotuner picks. Irrelevant under the
        interpreter, which never times.
    tiles: which forced tile configs a case may draw (`harness.strategies.tile_pool`): "interpreter"
        (small tiles, some with BLOCK_K above the drawn K tails, and DEQUANT=1 GEMM tiles) or "autotune"
        (those plus every config of gemlite's "max" spaces, for a GPU).
    """

    name: str
    examples: int
    max_M: int
    max_K: int
    max_N: int
    large_sizes: tuple[int, ...] = ()
    derandomize: bool = True
    shrink: bool = False
    work_budget: tuple[tuple[str, int], ...] = ()
    autotune: str | bool = False
    tiles: str = "interpreter"

    def __post_init__(self) -> None:
        if self.tiles not in ("interpreter", "autotune"):
            raise ValueError(f"tiles: expected 'interpreter' or 'autotune', got {self.tiles!r}")
        if self.examples < 1:
            raise ValueError(f"examples: expected >= 1, got {self.examples}")
        if self.max_M < 1 or self.max_N < 1:
            raise ValueError(f"max_M, max_N: expected >= 1, got {self.max_M}, {self.max_N}")
        if self.max_K < 32 or self.max_K % 32:
            raise ValueError(f"max_K: expected a positive multiple of 32, got {self.max_K}")

    def budget(self, family: str) -> int | None:
        """The M * N * K budget of `family` (None: unlimited)."""
        return dict(self.work_budget).get(family)

    def hypothesis_settings(self) -> settings:
        """The hypothesis settings of this profile (applied per test with ``@settings(...)``)."""
        phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
        if self.shrink:
            phases.append(Phase.shrink)
        return settings(
            max_examples=self.examples,
            derandomize=self.derandomize,
            deadline=None,  # interpreter and first-call autotuning make timings meaningless
            database=None if self.derandomize else settings.default.database,
            phases=phases,
            print_blob=True,
            # function_scoped_fixture: the suite's tests take `request`/`device`/`judge`, which do not
            # change between examples.
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.function_scoped_fixture,
            ],
            report_multiple_bugs=False,
        )


_LLM_SIZES = (1024, 2048, 3072, 4096, 5120, 8192)

# Interpreter budgets (M * N * K) per family, from timings on a 2-core CPU (Triton 3.9 interpreter):
# about 2 s per case at most for the GEMV families, 4 s for the tensor-core ones. "AUTO" at M <= 4
# dispatches to a GEMV family and takes the smallest budget (see `fit_to_family`).
_INTERPRETER_BUDGET = (
    ("GEMV", 300_000),
    ("GEMV_REVSPLITK", 300_000),
    ("GEMV_SPLITK", 150_000),
    ("GEMM_SPLITK", 2_500_000),
    ("GEMM", 6_500_000),
    ("AUTO", 6_500_000),
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("quick", examples=2, max_M=65, max_K=512, max_N=192, work_budget=_INTERPRETER_BUDGET),
        Profile("cpu", examples=6, max_M=65, max_K=512, max_N=192, work_budget=_INTERPRETER_BUDGET),
        # ~10 drawn cases per format x family (+ pins and sweeps): about 1 s each on an H100, most of it
        # drawing tensors on the CPU (kept there so a case is the same on every device).
        Profile(
            "gpu", examples=10, max_M=4096, max_K=8192, max_N=8192, large_sizes=_LLM_SIZES, tiles="autotune"
        ),
        Profile(
            "thorough",
            examples=100,
            max_M=4096,
            max_K=8192,
            max_N=8192,
            large_sizes=_LLM_SIZES,
            derandomize=False,
            shrink=True,
            autotune="fast",
            tiles="autotune",
        ),
    )
}

_selected: Profile | None = None


def get_profile(name: str) -> Profile:
    """The profile called `name`; raises ValueError listing the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile: unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def default_profile_name(has_gpu: bool) -> str:
    """The profile when none is asked for: "gpu" on a GPU machine, else the fast "quick" subset."""
    return "gpu" if has_gpu else "quick"


def select(name: str) -> Profile:
    """Make `name` the process-wide profile (done by the pytest plugin at configure time); returns it."""
    global _selected
    _selected = get_profile(name)
    return _selected


def current() -> Profile:
    """The selected profile; without a selection, the default for the device found."""
    if _selected is not None:
        return _selected
    import torch

    return get_profile(default_profile_name(torch.cuda.is_available()))
