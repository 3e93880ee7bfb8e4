"""Drop the tuned entries of some batch sizes from a config cache, so the next tuning run re-tunes them.

    python tools/drop_configs.py gemlite/configs/h100-sxm.json --m 1,2 [--families GEMV,GEMV_SPLITK]
    python -m harness.perf_cli run --gpu h100 --tune-only --m 1,2

A cache holds the winners of the config spaces and kernels it was tuned with; after a kernel or
config-space change its keys keep their old winners (a cache hit is never re-tuned). Run it on both
trees of an A/B (`--against-dir`) so each side tunes its own over the same space. Prints what it dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def drop(cache: dict, ms: set[int], families: set[str] | None) -> int:
    """Remove the entries whose key starts with ``M=<m>,`` for m in `ms` (in `families`, or all)."""
    dropped = 0
    for family, entries in cache.items():
        if families is not None and family not in families:
            continue
        for key in [k for k in entries if int(k.split(",", 1)[0].removeprefix("M=")) in ms]:
            del entries[key]
            dropped += 1
    return dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", type=Path, help="a gemlite/configs/<gpu key>.json file")
    p.add_argument("--m", required=True, help="comma-separated batch sizes, e.g. 1,2")
    p.add_argument("--families", help="comma-separated kernel families (default: every family)")
    args = p.parse_args(argv)
    try:
        ms = {int(m) for m in args.m.split(",")}
    except ValueError:
        p.error(f"--m: expected comma-separated integers, got {args.m!r}")
    families = set(args.families.split(",")) if args.families else None
    cache = json.loads(args.cache.read_text())
    n = drop(cache, ms, families)
    args.cache.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    print(f"{args.cache}: dropped {n} entries (M in {sorted(ms)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
