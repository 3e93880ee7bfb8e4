"""Rerun one drawn case exactly: ``python -m harness.repro '<json of the case>'``.

Every failure of the correctness suite prints this line (`reproducer`). The JSON is a `Case`
(`harness.strategies`); the tensors are redrawn from its seed, so the rerun sees the same x, codes,
scales, zeros and bias, runs the same kernel family, and prints the same comparison. Exit status 0
when the output is within the bound, 1 when it is not, 2 for a malformed case.

Options: ``--device cpu|cuda`` (default: cuda when available; on CPU the Triton interpreter is
switched on before gemlite is imported), ``--autotune fast|max`` (the suite's "thorough" profile runs
the autotuner's configs; otherwise each family's default config runs) and ``--show`` (also print y
and y* for small outputs).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

import torch


def _wants_interpreter(argv: list[str]) -> bool:
    """Whether this run needs the Triton interpreter: --device cpu, or no --device and no GPU."""
    device = None
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            device = argv[i + 1]
        elif arg.startswith("--device="):
            device = arg.split("=", 1)[1]
    return device == "cpu" or (device is None and not torch.cuda.is_available())


if __name__ == "__main__" and _wants_interpreter(sys.argv[1:]):
    # Importing gemlite (even gemlite.formats) imports its @triton.jit kernels, and the interpreter
    # must be chosen before that: hence here, above the imports below.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from harness.build import build_layer, golden, make_operands, precision, run_layer  # noqa: E402
from harness.case import Case  # noqa: E402
from harness.numerics import Comparison, compare_output  # noqa: E402
from harness.support import CaseRejected  # noqa: E402


def reproducer(case: Case, autotune: str | bool = False) -> str:
    """The one-line shell command that reruns `case` (under the autotune mode it ran with)."""
    line = f"python -m harness.repro {shlex.quote(case.to_json())}"
    return f"{line} --autotune {autotune}" if autotune else line


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: the verdict, the output and the golden (for inspection)."""

    case: Case
    comparison: Comparison
    y: torch.Tensor
    y_golden: torch.Tensor


def run_case(case: Case, device: str | torch.device, *, autotune: str | bool = False) -> CaseResult:
    """Build the case's operands, its gemlite layer and its golden; run the kernel; compare.

    autotune: the gemlite autotune mode for the run (``gemlite.set_autotune``; restored afterwards):
        False runs each family's default config, "fast"/"max" the autotuner's pick.
    Never raises for a wrong output (see ``result.comparison.ok``); raises CaseRejected when the
    reference refuses the drawn weight, and lets gemlite's own errors (e.g. a ValueError for an
    unsupported shape) propagate.
    """
    import gemlite

    ops = make_operands(case, device)
    layer = build_layer(case, ops)
    previous = gemlite.get_autotune()
    gemlite.set_autotune(autotune)
    try:
        y = run_layer(layer, ops.x, case.family)
    finally:
        gemlite.set_autotune(previous)
    gold = golden(case, ops)
    context = f"{case.label} {case.family} M={case.M} K={case.K} N={case.N}"
    line = reproducer(case, autotune)
    comparison = compare_output(y, gold, precision(case), repro=line, context=context)
    return CaseResult(case=case, comparison=comparison, y=y, y_golden=gold.y)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.repro", description=__doc__.split("\n\n")[0])
    parser.add_argument("case", help="the case as one line of JSON (as printed by a failing test)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--show", action="store_true", help="also print y and y* when they are small")
    parser.add_argument(
        "--autotune", choices=("fast", "max"), default=None,
        help="run under this gemlite autotune mode (default: each family's default config)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        case = Case.from_json(args.case)
    except (ValueError, TypeError) as e:
        print(f"harness.repro: {e}", file=sys.stderr)
        return 2
    device = args.device or _default_device()
    print(f"case: {case.to_json()}")
    print(f"format {case.label}, family {case.family}, M={case.M} K={case.K} N={case.N}, device {device}")
    try:
        result = run_case(case, device, autotune=args.autotune or False)
    except CaseRejected as e:
        print(f"harness.repro: the reference refuses this case's weight: {e}", file=sys.stderr)
        return 2
    print(result.comparison.message())
    c = result.comparison
    sqnr_float = "n/a" if c.sqnr_float_db is None else f"{c.sqnr_float_db:.1f} dB"
    print(f"mae {c.mae:.4g}, SQNR vs float product {sqnr_float}")
    if args.show and result.y.numel() <= 256:
        torch.set_printoptions(precision=6, linewidth=160)
        print("y  =", result.y.float().cpu())
        print("y* =", result.y_golden.cpu())
    return 0 if c.ok else 1


if __name__ == "__main__":
    sys.exit(main())
