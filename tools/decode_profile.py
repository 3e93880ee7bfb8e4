"""Which kernels a compiled decode step runs, and for how long: torch.profiler over greedy decoding of
`tools/tokens_per_s.py`'s ~1.1B Llama (random weights), fp16 against a gemlite format.

    PYTHONPATH=$PWD python tools/decode_profile.py --formats fp16 A16W4_HQQ_INT --tokens 8

Per format: patch the model as tokens_per_s does, run an eager ``generate`` (gemlite tunes its
configs for the prefill and decode M), then the compiled one (static cache, CUDA graphs, ``--backend``)
twice to compile and capture, then profile one more compiled ``generate`` and print the kernels by
total device time. The question it answers (suites/perf/NOTES.md): why a compiled 4-bit decode costs
~40 us more per linear and token than fp16 when the perf suite times those GEMVs at a few us.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokens_per_s as tps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--formats", nargs="+", default=["A16W4_HQQ_INT", "fp16"], choices=tps.FORMATS)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--backend", default="cudagraphs", help="torch.compile backend (default cudagraphs)")
    p.add_argument("--rows", type=int, default=16, help="kernels listed per format")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("decode_profile: needs a CUDA GPU", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    base = tps.build_model(False, "cuda")
    ids = torch.randint(0, tps.FULL["vocab_size"], (1, a.prompt), device="cuda")
    for fmt in a.formats:
        model = tps.patched(base, fmt, "cuda", a.group_size)
        tps.time_generate(model, ids, 4, 1, tps._generate_kwargs("eager", a.backend, "cuda"), "cuda")
        kw = tps._generate_kwargs("compile", a.backend, "cuda")
        tps.time_generate(model, ids, a.tokens, 2, kw, "cuda")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            seconds = tps.time_generate(model, ids, a.tokens, 1, kw, "cuda")
        print(f"## {fmt}: {a.tokens} tokens in {seconds * 1e3:.1f} ms (at {time.perf_counter() - t0:.0f} s)")
        avg = prof.key_averages()
        table = avg.table(sort_by="device_time_total", row_limit=a.rows, max_name_column_width=80)
        print(table)
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
