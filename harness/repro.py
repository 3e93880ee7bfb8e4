"""Rerun one drawn case exactly: ``python -m harness.repro '<json of the case>'``.

Every failure of the correctness suite prints this line (`reproducer`). The JSON is a `Case`
(`harness.case`); the tensors are redrawn from its seed, so the rerun sees the same x, codes,
scales, zeros and bias, runs the same kernel family under the same settings (determinism, forced tile,
workspace bound, packed input, state_dict round trip), and prints the same comparison. Exit status 0
when the output is within the bound (and a round trip gives it back), 1 when it is not, 2 for a
malformed case.

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

from harness.build import (  # noqa: E402
    activation_diff,
    build_layer,
    case_settings,
    golden,
    launched_config,
    make_operands,
    precision,
    reload_layer,
    run_layer,
)
from harness.case import Case  # noqa: E402
from harness.numerics import Comparison, compare_output, exact_diff  # noqa: E402
from harness.support import CaseRejected  # noqa: E402


class CaseRaised(AssertionError):
    """A legal case whose run raised (gemlite must compute every case the strategies draw); raised by the
    suite's ``judge`` with the exception chained."""


def reproducer(case: Case, autotune: str | bool = False) -> str:
    """The one-line shell command that reruns `case` (under the autotune mode it ran with)."""
    line = f"python -m harness.repro {shlex.quote(case.to_json())}"
    return f"{line} --autotune {autotune}" if autotune else line


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: the verdict, the output and the golden (for inspection).

    reload_diff: with ``case.state_dict`` in a deterministic run, `harness.numerics.exact_diff` of the
        reloaded layer's output against the original's (None: bitwise equal, or no round trip).
    reload_comparison: with ``case.state_dict`` and atomics (not bitwise reproducible), the reloaded
        layer's output judged under the bound; None otherwise.
    act_diff: dynamic activation formats: how gemlite's activation codes / scales differ from the
        reference's (`harness.build.activation_diff`); None when they are bitwise equal (or no such format).
    """

    case: Case
    comparison: Comparison
    y: torch.Tensor
    y_golden: torch.Tensor
    reload_diff: str | None = None
    reload_comparison: Comparison | None = None
    act_diff: str | None = None

    @property
    def ok(self) -> bool:
        reload_ok = self.reload_comparison is None or self.reload_comparison.ok
        return self.comparison.ok and self.reload_diff is None and reload_ok and self.act_diff is None


def run_case(case: Case, device: str | torch.device, *, autotune: str | bool = False) -> CaseResult:
    """Build the case's operands, its gemlite layer and its golden; run the kernel under the case's
    settings (`harness.build.case_settings`); compare; and with ``case.state_dict`` run a reloaded copy
    of the layer too.

    autotune: the gemlite autotune mode for the run (``gemlite.set_autotune``; restored afterwards):
        False runs each family's default config, "fast"/"max" the autotuner's pick.
    Never raises for a wrong output (see ``result.ok``); raises CaseRejected when the reference refuses
    the drawn weight, and lets gemlite's own errors (e.g. a ValueError for an unsupported shape)
    propagate.
    """
    ops = make_operands(case, device)
    layer = build_layer(case, ops)
    y_reloaded = None
    with case_settings(case, autotune):
        y = run_layer(layer, ops.x, case.family)
        config = launched_config(case, layer)
        if case.state_dict:
            y_reloaded = run_layer(reload_layer(layer), ops.x, case.family)
    gold = golden(case, ops)
    context = f"{case.label} {case.family} M={case.M} K={case.K} N={case.N}"
    line = reproducer(case, autotune)
    prec = precision(case, layer.layout, config)
    # An integer output (A8W8_INT8's int32) is judged as its float64 value, under float64's bound.
    comparison = compare_output(_as_float(y), gold, prec, repro=line, context=context)
    reload_diff = reload_comparison = None
    if y_reloaded is not None:
        if case.deterministic:
            diff = exact_diff(y_reloaded, y, what="output of the layer reloaded from its state_dict")
            reload_diff = None if diff is None else f"{diff}\nreproduce: {line}"
        else:
            reload_comparison = compare_output(
                _as_float(y_reloaded), gold, prec, repro=line,
                context=context + " (reloaded from its state_dict)",
            )  # fmt: skip
    act_diff = activation_diff(case, ops, layer)
    if act_diff is not None:
        act_diff = f"{act_diff}\nreproduce: {line}"
    return CaseResult(case, comparison, y, gold.y, reload_diff, reload_comparison, act_diff)


def _as_float(y: torch.Tensor) -> torch.Tensor:
    return y if y.is_floating_point() else y.double()


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
    if result.reload_diff is not None:
        print(f"state_dict round trip: the reloaded layer's output differs\n{result.reload_diff}")
    elif result.reload_comparison is not None:
        print(result.reload_comparison.message())
    elif case.state_dict:
        print("state_dict round trip: the reloaded layer gives the same output, bit for bit")
    if result.act_diff is not None:
        print(f"activation quantization differs from the reference's\n{result.act_diff}")
    if args.show and result.y.numel() <= 256:
        torch.set_printoptions(precision=6, linewidth=160)
        print("y  =", result.y.float().cpu())
        print("y* =", result.y_golden.cpu())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
