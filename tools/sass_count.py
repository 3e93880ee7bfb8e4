"""Count the sm_90 SASS instructions of one kernel launch, without a GPU.

    TRITON_INTERPRET=0 python tools/sass_count.py --layout int8_fp16 --family GEMM \
        --config '{"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "SPLIT_K": 1, "GROUP_M": 8,
                   "num_warps": 8, "num_stages": 3}' [--top 25] [--sass PATH]

Compiles the launch with `gemlite.kernels.compile_check`'s own functions (the plan's arguments on
"meta" tensors, for sm_90) and prints the total instruction count, the count inside the K loop (the
body of the largest backward branch: from its target to the branch), the registers a thread uses
(occupancy) and an opcode histogram of the loop.
A prediction tool for kernel changes: the K loop's instructions per weight element bound an
issue-limited kernel's time (suites/perf/NOTES.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def parse_sass(sass: str) -> list[tuple[int, str, str]]:
    """(address, opcode with modifiers, operands) of every instruction in a cuobjdump listing."""
    return [(int(m.group(1), 16), m.group(3), m.group(4)) for m in _INSTR.finditer(sass)]


def innermost_loop(instrs: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The instructions of the largest backward branch's body (the K loop), or [] if none."""
    best: list = []
    for addr, op, args in instrs:
        if not op.startswith("BRA"):
            continue
        m = re.search(r"0x([0-9a-f]+)", args)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target < addr:
            body = [ins for ins in instrs if target <= ins[0] <= addr]
            if len(body) > len(best):
                best = body
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layout", required=True, help="a gemlite.kernels.compile_check.LAYOUTS name")
    p.add_argument("--family", required=True)
    p.add_argument("--config", required=True, help="the config as JSON (autotune.Config fields)")
    p.add_argument("--M", type=int, help="rows of x (default: the compile check's M for the family)")
    p.add_argument("--top", type=int, default=25, help="opcodes shown in the loop histogram")
    p.add_argument("--sass", help="also write the SASS listing here")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("sass_count: run with TRITON_INTERPRET=0", file=sys.stderr)
        return 2
    import triton

    from gemlite import autotune
    from gemlite.kernels import compile_check as cc

    config = autotune.Config.from_dict(json.loads(args.config))
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    for launch in cc.kernel_launches(args.layout, args.family, config, args.M):
        compiled = cc.compile_launch(launch)
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            sass = subprocess.run(
                [cuobjdump, "-sass", "-res-usage", f.name], capture_output=True, text=True, check=True
            ).stdout
        regs = re.search(r"REG:(\d+)", sass)
        if args.sass:
            with open(args.sass, "w") as out:
                out.write(sass)
        instrs = parse_sass(sass)
        loop = innermost_loop(instrs)
        name = launch.kernel.__name__
        print(
            f"{name}: {len(instrs)} instructions, K loop {len(loop)}, shared {compiled.metadata.shared} B, "
            f"{regs.group(1) if regs else '?'} registers a thread"
        )
        hist = collections.Counter(op.split(".")[0] for _, op, _ in loop)
        for op, n in hist.most_common(args.top):
            print(f"  {op:<10} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
