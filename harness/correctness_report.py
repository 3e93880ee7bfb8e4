"""``reports/correctness.md``: what the kernel-vs-reference suite found, per format and kernel family.

The pytest plugin (`harness.pytest_plugin`) collects one `Record` per case the suite ran and calls
`write_report` at the end of the session. The report says where it ran (device, torch / Triton
versions, date, profile, commit), then one row per (format, kernel family):

* cases: distinct cases run; failed: those outside the bound (or raising);
* worst bound ratio: max over cases of max |y - y*| / bound (<= 1 passes; `harness.numerics`);
* max rel error: max |y - y*| / max |y*| over the cases;
* MAE: the mean absolute error, averaged over the cases;
* SQNR vs float: the lowest SQNR (dB) against the UNQUANTIZED float product x @ W.T + b, i.e. the
  quantization error a user sees; SQNR vs golden: the lowest against the float64 golden of the same
  quantized operands, i.e. the kernel's own rounding.

The passing cases closest to the bound, and every failure, are listed with their one-line reproducer.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import git
from harness.numerics import SAFETY
from harness.perf_report import md_table

#: How many passing cases closest to the bound the report lists.
CLOSEST_SHOWN = 5


@dataclass(frozen=True)
class Record:
    """The outcome of one case, as the report needs it.

    label: the format label (``A16W4_HQQ_INT/g128``); family: the kernel family or "AUTO".
    ok: within the bound and no exception. error: the exception text when the run raised.
    The figures are those of `harness.numerics.Comparison` (NaN when the run raised).
    case_json: the case (for the reproducer); test: the pytest node id.
    """

    label: str
    family: str
    ok: bool
    bound_ratio: float
    max_rel_error: float
    mae: float
    sqnr_golden_db: float
    sqnr_float_db: float | None
    case_json: str
    test: str = ""
    error: str = ""
    repro: str = ""

    @classmethod
    def from_comparison(cls, case, comparison, test: str = "") -> Record:
        """A record of a finished comparison (a `harness.strategies.Case` and its `Comparison`)."""
        return cls(
            label=case.label,
            family=case.family,
            ok=comparison.ok,
            bound_ratio=comparison.bound_ratio,
            max_rel_error=comparison.max_rel_error,
            mae=comparison.mae,
            sqnr_golden_db=comparison.sqnr_golden_db,
            sqnr_float_db=comparison.sqnr_float_db,
            case_json=case.to_json(),
            test=test,
            repro=comparison.repro or "",
        )

    @classmethod
    def from_error(cls, case, exc: BaseException, test: str = "", repro: str = "") -> Record:
        """A record of a case whose run raised (a kernel error is a failure too)."""
        nan = math.nan
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return cls(
            case.label, case.family, False, nan, nan, nan, nan, None, case.to_json(), test, text, repro
        )


@dataclass(frozen=True)
class Meta:
    """Where and how the suite ran."""

    date: str
    device: str
    profile: str
    torch: str
    triton: str
    python: str
    commit: str
    interpreter: bool
    fp_fusion: str
    autotune: str = "False"
    tests_passed: int = 0
    tests_failed: int = 0
    tests_skipped: int = 0

    @classmethod
    def collect(cls, profile: str, device: str | None = None, autotune="False", **counts: int) -> Meta:
        """Gather versions, device, date and commit from this process and the repository."""
        import torch
        import triton

        if device is None:
            if torch.cuda.is_available():
                device = torch.cuda.get_device_name()
            else:
                device = f"CPU ({platform.processor() or platform.machine()}), Triton interpreter"
        return cls(
            date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            device=device,
            profile=profile,
            torch=torch.__version__,
            triton=triton.__version__,
            python=platform.python_version(),
            commit=_commit(),
            interpreter=os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
            fp_fusion=os.environ.get("TRITON_DEFAULT_FP_FUSION", "unset"),
            autotune=str(autotune),
            **counts,
        )


def _commit() -> str:
    """The repository's HEAD (short hash), or "unknown" outside a git checkout."""
    return git.commit(short=True)[0]


@dataclass(frozen=True)
class Row:
    """The aggregate of one (format label, family)."""

    label: str
    family: str
    cases: int
    failed: int
    worst_bound_ratio: float
    max_rel_error: float
    mean_mae: float
    min_sqnr_float_db: float | None
    min_sqnr_golden_db: float


def _nanmax(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return max(vals) if vals else math.nan


def _nanmin(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return min(vals) if vals else math.nan


def summarize(records: Iterable[Record], family_order: tuple[str, ...] = ()) -> list[Row]:
    """One `Row` per (label, family), in the order labels first appear and families in `family_order`."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.label, r.family), []).append(r)
    label_order = {label: i for i, (label, _) in enumerate(groups)}

    def key(lf):
        label, fam = lf
        fam_pos = family_order.index(fam) if fam in family_order else len(family_order)
        return (label_order[label], fam_pos, fam)

    rows = []
    for label, fam in sorted(groups, key=key):
        rs = groups[(label, fam)]
        floats = [r.sqnr_float_db for r in rs if r.sqnr_float_db is not None]
        rows.append(
            Row(
                label=label,
                family=fam,
                cases=len(rs),
                failed=sum(not r.ok for r in rs),
                worst_bound_ratio=_worst_ratio(rs),
                max_rel_error=_nanmax(r.max_rel_error for r in rs),
                mean_mae=_mean(r.mae for r in rs),
                min_sqnr_float_db=_nanmin(floats) if floats else None,
                min_sqnr_golden_db=_nanmin(r.sqnr_golden_db for r in rs),
            )
        )
    return rows


def _worst_ratio(records: list[Record]) -> float:
    """The largest bound ratio; inf when a case raised (it has no ratio but must not read as a pass)."""
    if any(r.error for r in records):
        return math.inf
    return _nanmax(r.bound_ratio for r in records)


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _num(v: float | None, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, fmt)


def render(records: Iterable[Record], meta: Meta, family_order: tuple[str, ...] = ()) -> str:
    """The markdown report (see the module docstring)."""
    records = list(records)
    rows = summarize(records, family_order)
    failed = [r for r in records if not r.ok]
    verdict = "PASS" if not failed and meta.tests_failed == 0 else "FAIL"
    tests = f"{meta.tests_passed} passed, {meta.tests_failed} failed, {meta.tests_skipped} skipped"
    out = [
        "# gemlite correctness report",
        "",
        "Kernel output vs the float64 golden of the same quantized operands (`reference.linear`),",
        "judged element by element under",
        f"`|y - y*| <= {SAFETY:g} * (u_out*|y*| + eta_out + u_deq*S_W + eta_deq*sum_k|x_k| "
        "+ (K+1)*u_acc*(S_W + |b|))`, `S_W = sum_k|x_k W_k|`",
        "(`harness/numerics.py`: u = unit roundoff of the output dtype, of what the path rounds weights to",
        "(fp16/bf16 on pre-scaled tensor-core and DEQUANT paths, fp32 on GEMV and post-scaled paths, none",
        "for A16W16) and of the fp32 accumulator; eta = half the subnormal spacing).",
        "",
        md_table(
            ["", ""],
            [
                ["verdict", f"**{verdict}**"],
                ["date", meta.date],
                ["device", meta.device],
                ["profile / gemlite autotune mode", f"{meta.profile} / {meta.autotune}"],
                ["torch / triton / python", f"{meta.torch} / {meta.triton} / {meta.python}"],
                ["commit", meta.commit],
                ["TRITON_INTERPRET / TRITON_DEFAULT_FP_FUSION", f"{meta.interpreter:d} / {meta.fp_fusion}"],
                ["cases", f"{len(records)} run, {len(failed)} failed"],
                ["tests", tests],
            ],
            "ll",
        ),
        "",
        "## Results by format and kernel family",
        "",
        "Worst bound ratio <= 1 passes. Max rel error = max|y - y*| / max|y*|. SQNR vs float: against",
        "the unquantized product (quantization + kernel error); SQNR vs golden: against the golden",
        "(kernel error only).",
        "",
    ]
    headers = [
        "format", "family", "cases", "failed", "worst bound ratio", "max rel error", "MAE",
        "SQNR vs float (min, dB)", "SQNR vs golden (min, dB)",
    ]  # fmt: skip
    table = [
        [
            row.label, row.family, str(row.cases), str(row.failed), _num(row.worst_bound_ratio, ".3g"),
            _num(row.max_rel_error, ".2e"), _num(row.mean_mae, ".2e"), _num(row.min_sqnr_float_db, ".1f"),
            _num(row.min_sqnr_golden_db, ".1f"),
        ]
        for row in rows
    ]  # fmt: skip
    if not table:
        table.append(["(no cases recorded)"] + [""] * 8)
    out.append(md_table(headers, table, "ll" + "r" * 7))
    passing = [r for r in records if r.ok and not math.isnan(r.bound_ratio)]
    closest = sorted(passing, key=lambda r: r.bound_ratio, reverse=True)[:CLOSEST_SHOWN]
    out += ["", "## Closest to the bound (passing)", ""]
    if not closest:
        out.append("None.")
    for r in closest:
        ratio = _num(r.bound_ratio, ".3g")
        out.append(f"- {r.label} {r.family}: bound ratio {ratio}: `{r.repro or r.case_json}`")
    out += ["", "## Failures", ""]
    if not failed:
        out.append("None.")
    for r in failed:
        what = r.error or (
            f"bound ratio {_num(r.bound_ratio, '.3g')}, max rel error {_num(r.max_rel_error, '.2e')}"
        )
        out.append(f"- `{r.test}` {r.label} {r.family}: {what}")
        if r.repro:
            out.append(f"  reproduce: `{r.repro}`")
    out.append("")
    return "\n".join(out)


def write_report(
    path: str | os.PathLike, records: Iterable[Record], meta: Meta, family_order: tuple[str, ...] = ()
) -> Path:
    """Render and write the report (creating its folder); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(records, meta, family_order))
    return p
