"""Per-GPU baselines and the regression gate.

A baseline (``suites/perf/baselines/<gpu key>.json``) is written only from a measured run
(``nox -s perf -- --gpu h100 --update-baseline``): for every case its median time per call and the
relative spread of its replays (IQR / median), plus the metadata of the run(s) it came from (GPU,
driver, torch, triton, commit, date, measured copy bandwidth). A run that measured a subset merges
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

    def __post_init__(self) -> None:
        if not 0 < self.rel_floor < 1:
            raise ValueError(f"rel_floor: expected a fraction in (0, 1), got {self.rel_floor}")
        if not 0 < self.compute_floor < 1:
            raise ValueError(f"compute_floor: expected a fraction in (0, 1), got {self.compute_floor}")
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
    ratio: now / base. confirm_us: the re-measured medians.
    """

    case_id: str
    status: str
    base_us: float | None = None
    cur_us: float | None = None
    threshold: float | None = None
    confirm_us: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.cur_us / self.base_us if self.cur_us and self.base_us else None

    @property
    def confirmed_us(self) -> float | None:
        return statistics.median(self.confirm_us) if self.confirm_us else None


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
    """First pass of the gate: one Verdict per measurement that `gated` selects (gemlite cases).

    Suspects come back with status "suspect"; `confirm` decides them. Cases not run are left out.
    """
    cases = (baseline or {}).get("cases", {})
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
    return out


def confirm(
    verdicts: list[Verdict],
    remeasure: Callable[[str], float | None],
    rule: GateRule,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> list[Verdict]:
    """Re-measure every suspect `rule.confirm_runs` times (remeasure(case_id) -> median us, or None
    when it failed) and settle it: "regression" when the median of the re-measurements is still
    beyond the threshold, else "noise". Returns the same list, updated in place.

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
            us = remeasure(v.case_id)
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
            f"  {v.case_id}: {v.status} (base {v.base_us:.2f} us, now {v.cur_us:.2f}, "
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
                v.case_id,
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
        parts.append(
            "ERRORS:\n" + md_table(["case", "error"], [[v.case_id, v.note[:150]] for v in err], "ll")
        )
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
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.status] = counts.get(v.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if not has_baseline:
        parts.append(
            f"NO BASELINE for this GPU: nothing compared ({summary}). Record one with --update-baseline."
        )
    else:
        verdict = "FAIL" if exit_code(verdicts) else "PASS"
        parts.append(f"gate: {verdict} ({summary or 'no gated cases'})")
    return "\n\n".join(parts)
