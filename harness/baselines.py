"""Per-GPU baselines and the regression gate.

A baseline (``suites/perf/baselines/<gpu key>.json``) is written only from a measured run
(``nox -s perf -- --gpu h100 --update-baseline``): for every case its median time per call and the
relative spread of its replays (IQR / median), for a case of the suite's host subset its eager host
time per call (``host_us``; a baseline recorded before the host subset existed has none, and loads
as before), plus the metadata of the run(s) it came from (GPU, driver, torch, triton, commit, date,
measured copy bandwidth). A run that measured a subset merges
into the existing file: measured cases are replaced, the others kept, and the run is appended to the
file's ``runs`` history, so a baseline can be built in several shorter runs.

The gate rule (`GateRule`), per case:

    noise     = max(rel_iqr in the baseline, rel_iqr now)          # IQR / median over replays
    floor     = rel_floor (5%) for a memory-bound case, compute_floor (20%) for a compute-bound one
                (arithmetic intensity 2MNK / minimum bytes >= compute_intensity, 300 flop/byte)
    threshold = max(floor, noise_k * noise)                         # noise_k = 3
    suspect   : now > base * (1 + threshold)  and  now - base > abs_floor_us (0.5 us)
    confirmed : the median of `confirm_runs` (3) fresh re-measurements of the case is still beyond
                the same threshold -> REGRESSION (the run fails)
    otherwise : NOISE (reported, does not fail)
    improved  : now < base / (1 + threshold) and base - now > abs_floor_us -> IMPROVEMENT (reported,
                does not fail: refresh the baseline on purpose)

Why these numbers. Replay-to-replay IQR measures noise within one run; a 3x IQR fence is the
rustc-perf rule (Q3 + 3 IQR) and, for the ~1% spreads graph replays show, stays inside the floor.
The floors cover what one run's IQR cannot see: run-to-run drift of clocks and temperature, measured
on an H100 SXM (2026-11-24) with three full runs of unchanged code against the baseline:

    regime (first measurement of a case)     cases   slowest    p99     > +5%
    memory-bound (M <= 64)                     945     +6.2%   +3.3%      4
    compute-bound (M >= 256)                   540     +8.0%   +6.3%     14

and in the compute-bound regime the drift is bimodal and lasts: re-measuring A16W8_FP8 16384x16384
M=512 gave 490, 563, 564 us against a 495 us baseline (+14%). A single 5% floor made two of those
three unchanged runs fail; 5% below the intensity of the H100's balance point (989 TFLOP/s over
~3.0 TB/s, ~330 flop/byte; 300 keeps the fp16-weight M = 256 cases compute-bound) and 20% above it
passes them, while a planted slowdown of the memory-bound decode kernels as small as +14.8% was
confirmed and failed the run. The absolute floor keeps microsecond kernels, where one graph-node gap
is 10%, from failing on a fraction of a microsecond. Re-measuring a suspect before failing is what
makes the gate quiet on a noisy machine: a transient slowdown does not survive it.

The eager host time (``host_us``, gemlite cases of the host subset) is gated the same way with its
own floor and no noise term (one number per measurement, wall time over 10,000 calls, so it has no
replay spread to scale by):

    suspect   : host now > host base * (1 + host_floor)  and  now - base > abs_floor_us
    confirmed : the FASTEST of `confirm_runs` fresh re-measurements is still beyond it

Why 50% and the fastest. Host time is Python and the driver's launch path on a CPU whose clock,
caches and neighbours change from run to run, and on a cloud VM it swings in states that last
seconds to minutes and slow F.linear too. Measured on the H200 machine (a 16-core VM, torch 2.11,
Python 3.12, 2026-12-01), one process re-timing 2,000-call rounds of A16W4_HQQ_INT/g128 4096x4096
M=1 for 15 s: 89.6-200.5 us (F.linear 15.7-37.3 us), slow stretches of 10 rounds in a row; seven
runs of unchanged code against a baseline of the first (10,000 calls, the garbage collector off):

    case (4096x4096)          baseline    6 later runs, first measurement       slowest
    A16W4_HQQ_INT/g128 M1      92.1 us    102.6  90.1 116.1 180.9  97.3 155.2   +96%
    A16W8_INT8 M4              92.5 us    106.2 106.2 110.0 181.8 174.0 114.4   +96%
    A16W16 M4                  89.6 us    120.2  94.4 174.7 165.9 160.8 142.9   +95%
    F.linear fp16 M1           17.0 us     28.0  15.9  25.4  24.2  16.2  18.7   +65%

A 20% floor with the median of the re-measurements failed four of those six runs; 50% with the
median failed two (re-measured 175.5, 114.8, 141.5 us against 89.6: the slow state outlasted the
re-measurements); 50% with the fastest re-measurement passed all six. Noise only adds time, so the
fastest re-measurement is the one that says whether the code got slower. What this gate can catch
on such a machine is a large host regression (a sync, a recompile or an autotune lookup on the hot
path: +50% of a 90 us forward is 45 us); smaller ones need a quieter host (``--host-floor``). A
baseline case without host_us has nothing to gate ("new").
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.perf_report import md_table

__all__ = [
    "BASELINES_DIR",
    "BaselineError",
    "GateRule",
    "Verdict",
    "baseline_path",
    "compare",
    "confirm",
    "exit_code",
    "load_baseline",
    "merge_baseline",
    "render_verdicts",
]

# Only the path, not harness.perf_cases: this module stays importable without torch (nox -s report).
BASELINES_DIR = Path(__file__).resolve().parent.parent / "suites" / "perf" / "baselines"
SCHEMA = 1


class BaselineError(ValueError):
    """A baseline file that cannot be used (corrupt, wrong GPU, a dry run's)."""


@dataclass(frozen=True)
class GateRule:
    """The regression rule (see the module docstring)."""

    rel_floor: float = 0.05
    noise_k: float = 3.0
    abs_floor_us: float = 0.5
    confirm_runs: int = 3
    compute_floor: float = 0.20
    compute_intensity: float = 300.0
    host_floor: float = 0.50

    def __post_init__(self) -> None:
        if not 0 < self.rel_floor < 1:
            raise ValueError(f"rel_floor: expected a fraction in (0, 1), got {self.rel_floor}")
        if not 0 < self.compute_floor < 1:
            raise ValueError(f"compute_floor: expected a fraction in (0, 1), got {self.compute_floor}")
        if not 0 < self.host_floor < 1:
            raise ValueError(f"host_floor: expected a fraction in (0, 1), got {self.host_floor}")
        if self.compute_intensity <= 0:
            raise ValueError(f"compute_intensity: must be > 0 flop/byte, got {self.compute_intensity}")
        if self.noise_k <= 0:
            raise ValueError(f"noise_k: must be > 0, got {self.noise_k}")
        if self.abs_floor_us < 0:
            raise ValueError(f"abs_floor_us: must be >= 0, got {self.abs_floor_us}")
        if self.confirm_runs < 1:
            raise ValueError(f"confirm_runs: need at least one re-measurement, got {self.confirm_runs}")

    def threshold(
        self, base_rel_iqr: float | None, cur_rel_iqr: float | None, intensity: float | None = None
    ) -> float:
        """Relative slowdown beyond which a case is suspect: max(floor, noise_k * noise), the floor
        being compute_floor when the case's arithmetic intensity (flop/byte) reaches
        compute_intensity, else rel_floor."""
        noise = max(base_rel_iqr or 0.0, cur_rel_iqr or 0.0)
        compute_bound = intensity is not None and intensity >= self.compute_intensity
        return max(self.compute_floor if compute_bound else self.rel_floor, self.noise_k * noise)

    def slower(self, base_us: float, cur_us: float, threshold: float) -> bool:
        return cur_us > base_us * (1 + threshold) and cur_us - base_us > self.abs_floor_us

    def faster(self, base_us: float, cur_us: float, threshold: float) -> bool:
        return cur_us < base_us / (1 + threshold) and base_us - cur_us > self.abs_floor_us


@dataclass
class Verdict:
    """The gate's decision on one case.

    status: "ok" | "suspect" (before confirmation) | "regression" (confirmed) | "noise" (suspect not
    confirmed) | "unconfirmed" (no time left to re-measure; fails) | "improvement" | "new" (no
    baseline) | "error" (the case failed now) | "skipped".
    metric: what is compared, the Measurement attribute: "us" (kernel time per call, CUDA-graph
    replays) or "host_us" (eager host time per call). ratio: now / base. confirm_us: the
    re-measured values.
    """

    case_id: str
    status: str
    base_us: float | None = None
    cur_us: float | None = None
    threshold: float | None = None
    confirm_us: list[float] = field(default_factory=list)
    note: str = ""
    metric: str = "us"

    @property
    def label(self) -> str:
        """The case id, marked when the verdict is on the eager host time."""
        return self.case_id + (" (eager host)" if self.metric == "host_us" else "")

    @property
    def ratio(self) -> float | None:
        return self.cur_us / self.base_us if self.cur_us and self.base_us else None

    @property
    def confirmed_us(self) -> float | None:
        """What the re-measurements say: their median for the kernel time, their minimum for the
        eager host time (whose noise only ever adds time; see the module docstring)."""
        if not self.confirm_us:
            return None
        return min(self.confirm_us) if self.metric == "host_us" else statistics.median(self.confirm_us)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def baseline_path(key: str, directory: Path = BASELINES_DIR) -> Path:
    return Path(directory) / f"{key}.json"


def load_baseline(path: Path, gpu_key: str, dry_run: bool = False) -> dict | None:
    """The baseline at `path`, or None if there is none.

    Raises BaselineError when the file is not a baseline of our schema, was recorded on another GPU
    (`gpu_key`), or is a dry run's when this run is real (or the reverse): comparing those would be
    comparing made-up numbers.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BaselineError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("cases"), dict):
        raise BaselineError(f"{path}: not a baseline file (schema {SCHEMA} with a 'cases' object)")
    meta = data.get("meta", {})
    if meta.get("gpu_key") != gpu_key:
        raise BaselineError(
            f"{path}: recorded on {meta.get('gpu')!r} (key {meta.get('gpu_key')!r}), not {gpu_key!r}"
        )
    if bool(meta.get("dry_run")) != bool(dry_run):
        what = "a dry run's synthetic numbers" if meta.get("dry_run") else "real GPU numbers"
        raise BaselineError(f"{path}: holds {what}; this run is {'a dry run' if dry_run else 'real'}")
    for cid, c in data["cases"].items():
        if not isinstance(c, dict) or not isinstance(c.get("us"), (int, float)) or c["us"] <= 0:
            raise BaselineError(f"{path}: case {cid!r} has no positive 'us'")
        host = c.get("host_us")  # optional: only cases of the host subset, only newer baselines
        if host is not None and (not isinstance(host, (int, float)) or host <= 0):
            raise BaselineError(f"{path}: case {cid!r} has a 'host_us' that is not a positive number")
    return data


_META_KEYS = (
    "gpu",
    "gpu_key",
    "driver",
    "torch",
    "triton",
    "python",
    "commit",
    "dirty",
    "date",
    "copy_gbps",
    "suite",
    "quick",
    "selection",
    "dry_run",
)


def merge_baseline(old: dict | None, meta: dict, measurements: Iterable) -> dict:
    """A baseline holding `measurements` (status "ok" only) over `old`'s other cases.

    meta: the run's metadata (`harness.perf_run.base_meta` plus copy_gbps). Every case records the
    index of the run it came from in ``runs``. Raises ValueError when there is nothing measured:
    a baseline only ever comes from a run.
    """
    run = {k: meta.get(k) for k in _META_KEYS}
    runs = list(old.get("runs", [])) if old else []
    cases = dict(old.get("cases", {})) if old else {}
    run_index = len(runs)
    n = 0
    for m in measurements:
        if m.status != "ok" or not m.us:
            continue
        cases[m.case_id] = {
            "us": m.us,
            "iqr_us": m.iqr_us,
            "rel_iqr": m.rel_iqr,
            "replays": m.replays,
            "calls_per_replay": m.calls_per_replay,
            "run": run_index,
        }
        if getattr(m, "host_us", None):
            cases[m.case_id].update(host_us=m.host_us, host_calls=m.host_calls)
        n += 1
    if n == 0:
        raise ValueError(
            "measurements: no successfully timed case; a baseline only comes from measured numbers"
        )
    run["cases"] = n
    runs.append(run)
    return {"schema": SCHEMA, "meta": run, "runs": runs, "cases": dict(sorted(cases.items()))}


# --------------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------------


def compare(
    measurements: Iterable, baseline: dict | None, rule: GateRule, gated: Callable[[object], bool]
) -> list[Verdict]:
    """First pass of the gate: one Verdict per measurement that `gated` selects (gemlite cases) on
    its kernel time, then one per such measurement that has an eager host time (metric "host_us").

    Suspects come back with status "suspect"; `confirm` decides them. Cases not run are left out.
    """
    cases = (baseline or {}).get("cases", {})
    measurements = list(measurements)
    out = []
    for m in measurements:
        if not gated(m) or m.status == "not_run":
            continue
        if m.status == "error":
            out.append(Verdict(m.case_id, "error", note=m.reason))
            continue
        if m.status == "skipped":
            out.append(Verdict(m.case_id, "skipped", note=m.reason))
            continue
        b = cases.get(m.case_id)
        if b is None:
            out.append(Verdict(m.case_id, "new", cur_us=m.us))
            continue
        thr = rule.threshold(b.get("rel_iqr"), m.rel_iqr, getattr(m, "intensity", None))
        status = (
            "suspect"
            if rule.slower(b["us"], m.us, thr)
            else "improvement"
            if rule.faster(b["us"], m.us, thr)
            else "ok"
        )
        out.append(Verdict(m.case_id, status, base_us=b["us"], cur_us=m.us, threshold=thr))
    for m in measurements:
        if not gated(m) or m.status != "ok" or getattr(m, "host_us", None) is None:
            continue
        base_host = cases.get(m.case_id, {}).get("host_us")
        if base_host is None:
            out.append(Verdict(m.case_id, "new", cur_us=m.host_us, metric="host_us"))
            continue
        thr = rule.host_floor
        status = (
            "suspect"
            if rule.slower(base_host, m.host_us, thr)
            else "improvement"
            if rule.faster(base_host, m.host_us, thr)
            else "ok"
        )
        out.append(
            Verdict(m.case_id, status, base_us=base_host, cur_us=m.host_us, threshold=thr, metric="host_us")
        )
    return out


def confirm(
    verdicts: list[Verdict],
    remeasure: Callable[[str, str], float | None],
    rule: GateRule,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> list[Verdict]:
    """Re-measure every suspect `rule.confirm_runs` times (remeasure(case_id, metric) -> the fresh
    value of the verdict's metric, "us" or "host_us", or None when it failed) and settle it:
    "regression" when the re-measurements (`Verdict.confirmed_us`: their median, or for host time
    their minimum) are still beyond the threshold, else "noise". Returns the same list, updated in
    place.

    deadline: a time.monotonic() value; suspects not reached by then become "unconfirmed", which
    fails the gate too (a slowdown nobody could clear is not a pass).
    """
    suspects = [v for v in verdicts if v.status == "suspect"]
    if suspects:
        log(f"re-measuring {len(suspects)} suspect case(s) {rule.confirm_runs} times each ...")
    for v in suspects:
        if deadline is not None and time.monotonic() > deadline:
            v.status, v.note = "unconfirmed", "not re-measured: time budget (--max-minutes) spent"
            continue
        for _ in range(rule.confirm_runs):
            us = remeasure(v.case_id, v.metric)
            if us is not None:
                v.confirm_us.append(us)
        if not v.confirm_us:
            v.status, v.note = "error", "re-measurement failed"
        elif rule.slower(v.base_us, v.confirmed_us, v.threshold):
            v.status = "regression"
        else:
            v.status = "noise"
            v.note = f"first {v.cur_us:.2f} us, re-measured {v.confirmed_us:.2f} us"
        log(
            f"  {v.label}: {v.status} (base {v.base_us:.2f} us, now {v.cur_us:.2f}, "
            f"re-measured {', '.join(f'{u:.2f}' for u in v.confirm_us) or '-'})"
        )
    return verdicts


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """1 when a regression was confirmed, a suspect could not be re-measured in the time budget, or
    a gated case errored; else 0."""
    return 1 if any(v.status in ("regression", "unconfirmed", "error") for v in verdicts) else 0


def render_verdicts(verdicts: list[Verdict], has_baseline: bool = True) -> str:
    """The gate's report: regressions, errors, improvements and unconfirmed suspects as tables, then
    one summary line."""
    parts = []

    def rows(vs: list[Verdict], confirmed: bool) -> list[list[str]]:
        out = []
        for v in sorted(vs, key=lambda v: -(v.ratio or 0)):
            row = [
                v.label,
                f"{v.base_us:.2f}",
                f"{v.cur_us:.2f}",
                f"{(v.ratio - 1) * 100:+.1f}%",
                f"{v.threshold * 100:.1f}%",
            ]
            if confirmed:
                row.append(", ".join(f"{u:.2f}" for u in v.confirm_us) or "-")
            out.append(row)
        return out

    reg = [v for v in verdicts if v.status == "regression"]
    if reg:
        parts.append(
            "REGRESSIONS (confirmed by re-measuring):\n"
            + md_table(
                ["case", "base us", "now us", "change", "threshold", "re-measured us"], rows(reg, True)
            )
        )
    err = [v for v in verdicts if v.status == "error"]
    if err:
        parts.append("ERRORS:\n" + md_table(["case", "error"], [[v.label, v.note[:150]] for v in err], "ll"))
    imp = [v for v in verdicts if v.status == "improvement"]
    if imp:
        parts.append(
            "IMPROVEMENTS beyond the noise band (refresh the baseline with --update-baseline if intended):\n"
            + md_table(["case", "base us", "now us", "change", "threshold"], rows(imp, False))
        )
    unc = [v for v in verdicts if v.status == "unconfirmed"]
    if unc:
        parts.append(
            "UNCONFIRMED suspects (time budget spent before re-measuring; failing, rerun these cases):\n"
            + md_table(["case", "base us", "now us", "change", "threshold"], rows(unc, False))
        )
    noise = [v for v in verdicts if v.status == "noise"]
    if noise:
        parts.append(
            "Suspects NOT confirmed by re-measuring (noise, not failing):\n"
            + md_table(
                ["case", "base us", "first us", "change", "threshold", "re-measured us"], rows(noise, True)
            )
        )
    summary = _counts(v for v in verdicts if v.metric != "host_us")
    host = _counts(v for v in verdicts if v.metric == "host_us")
    if host:
        summary = (summary + "; " if summary else "") + f"eager host time: {host}"
    if not has_baseline:
        parts.append(
            f"NO BASELINE for this GPU: nothing compared ({summary}). Record one with --update-baseline."
        )
    else:
        verdict = "FAIL" if exit_code(verdicts) else "PASS"
        parts.append(f"gate: {verdict} ({summary or 'no gated cases'})")
    return "\n\n".join(parts)


def _counts(verdicts: Iterable[Verdict]) -> str:
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.status] = counts.get(v.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
