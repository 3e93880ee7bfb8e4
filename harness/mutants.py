"""The catalogue of planted kernel bugs for ``nox -s mutation`` (`harness.mutation` runs them).

Each `Mutant` is a textual patch of one gemlite source file: ``old`` must occur EXACTLY once in that
file, and is replaced by ``new``. Patches are written against the real kernel code, so when the code
changes under them they stop applying and the mutation session fails ("out of sync") until the
catalogue is updated: the proof that the suite catches these bugs never silently goes stale.

``tests`` names the test files (or node ids) that reach the patched path, and ``focus`` is a pytest
``-k`` expression choosing among them (the format, family or path it lives in), which keeps each run
short; the tests are the same ones CI runs, under the ``quick`` profile. Every mutant must make at
least one of them fail in a way that counts (`harness.mutation.classify_failure`): an output outside the
error bound, a bitwise comparison that fails, a legal case that raises, or an expected error that does
not come. A failing meta-test (the catalogue-sync test of ``suites/unit/test_harness_mutation.py``,
which fails for every applied patch) or any other assertion is not a catch.

A bug the suite cannot see by construction is not listed: e.g. a missing output write would leave
``torch.empty`` memory, which may by chance hold the right values from a previous identical run; and
the interpreter runs a grid's programs one after another, so a split-K ordering race (the first
program of a tile, not the last, summing the partials) heals itself there: every later program of
the tile sums again once the counter is reset. Such races are for the GPU suite and compute-sanitizer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One planted bug.

    name: short identifier (``--only NAME``).
    bug: what a reader of the table should understand was broken.
    path: the patched file, relative to the repository root.
    old: the exact text replaced (must occur once in `path`).
    new: its replacement.
    focus: pytest -k expression of the tests expected to catch it (None: every test of `tests`).
    tests: the test files (or node ids) the run collects, relative to the repository root.
    """

    name: str
    bug: str
    path: str
    old: str
    new: str
    focus: str | None = None
    tests: tuple[str, ...] = ("suites/correctness/test_formats.py",)


_COMMON = "gemlite/kernels/common.py"
# The path matrix (`harness.strategies.path_cases`): test ids name the scale mode, the path and the
# settings, so -k selects the cases that run a mutant's path.
_PATHS = ("suites/correctness/test_paths.py",)

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "group_index",
        "wrong group index: GEMM reads the scale/zero row of k0 // (2 * group_size)",
        "gemlite/kernels/gemm.py",
        "s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE",
        "s_ptr, z_ptr, k0 // (2 * GROUP_SIZE), offs_n, mask_n, stride_sg, ZERO_MODE",
        focus="HQQ and GEMM and not SPLITK",
    ),
    Mutant(
        "gemv_group",
        "wrong group index: GEMV reads the scale/zero row of its split's first K step for every step",
        "gemlite/kernels/gemv.py",
        "s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE",
        "s_ptr, z_ptr, k_start // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE",
        focus="HQQ and GEMV",
    ),
    Mutant(
        "nibble_order",
        "swapped code order inside a packed word (most significant bits first)",
        _COMMON,
        "shifts = tl.arange(0, ELEMS_PER_WORD) * W_BITS",
        "shifts = (ELEMS_PER_WORD - 1 - tl.arange(0, ELEMS_PER_WORD)) * W_BITS",
        focus="A16W4_HQQ_INT",
    ),
    Mutant(
        "code_mask",
        "code mask one bit too wide: the neighbouring code leaks into each unpacked code",
        _COMMON,
        "codes = (words.to(tl.int32)[:, None, :] >> shifts[None, :, None]) & ((1 << W_BITS) - 1)",
        "codes = (words.to(tl.int32)[:, None, :] >> shifts[None, :, None]) & ((2 << W_BITS) - 1)",
        focus="A16W2_HQQ_INT",
    ),
    Mutant(
        "zero_sign_float",
        "float zero-point sign: (q + z) * s instead of (q - z) * s",
        _COMMON,
        "q = q - zero\n",
        "q = q + zero\n",
        focus="HQQ",
    ),
    Mutant(
        "zero_sign_int",
        "integer zero-point sign: q + z instead of q - z (HQQ integer zeros, ternary)",
        _COMMON,
        "q = q - zero_int",
        "q = q + zero_int",
        focus="A16W158_INT",
    ),
    Mutant(
        "scale_twice",
        "per-channel scale applied twice in the epilogue (INT8, FP8, ternary, channel-wise HQQ)",
        _COMMON,
        "    if POST_SCALE:\n"
        "        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n",
        "    if POST_SCALE:\n        s = tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n"
        "        acc = acc * s * s\n",
        focus="A16W8_INT8",
    ),
    Mutant(
        "dropped_bias",
        "bias dropped from the epilogue",
        _COMMON,
        "acc = acc + tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)",
        "acc = acc",
        focus="A16W16",
    ),
    Mutant(
        "fp16_acc_dot",
        "fp16 accumulation on the tensor-core path (the running sum rounded to fp16 after every K tile)",
        _COMMON,
        "    else:\n        return tl.dot(a, b, acc)\n",
        "    else:\n        return (acc + tl.dot(a, b)).to(tl.float16).to(tl.float32)\n",
        focus="GEMM and not SPLITK",
    ),
    Mutant(
        "fp16_acc_gemv",
        "fp16 accumulation in GEMV (the running sum rounded to fp16 after every K step)",
        "gemlite/kernels/gemv.py",
        "acc += tl.sum(x * w, axis=1)",
        "acc = (acc + tl.sum(x * w, axis=1)).to(tl.float16).to(tl.float32)",
        focus="GEMV and not SPLITK and not REVSPLITK",
    ),
    Mutant(
        "skipped_k_tail",
        "skipped K tail: the GEMV K loop stops at the last full BLOCK_K tile",
        "gemlite/kernels/gemv.py",
        "for k0 in range(k_start, k_end, BLOCK_K):",
        "for k0 in range(k_start, k_end - BLOCK_K + 1, BLOCK_K):",
        focus="GEMV_SPLITK",
    ),
    Mutant(
        "m_tail_mask",
        "M tail masked wrong: GEMM loads activation rows with offs_m < M - 1 (last row read as 0)",
        "gemlite/kernels/gemm.py",
        "x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None], other=0.0)",
        "x = tl.load(x_rows + k_idx[None, :], mask=(offs_m < M - 1)[:, None], other=0.0)",
        focus="GEMM and not SPLITK",
    ),
    Mutant(
        "output_cast",
        "wrong output cast: the result passes through bf16 before the output dtype",
        _COMMON,
        "        y = apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)\n"
        "        tl.store(out_ptr + offs_mn, y.to(out_ptr.dtype.element_ty), mask=mask)\n",
        "        y = apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)\n"
        "        tl.store(out_ptr + offs_mn, y.to(tl.bfloat16).to(out_ptr.dtype.element_ty), mask=mask)\n",
        focus="GEMM and not SPLITK",
    ),
    Mutant(
        "packing_word",
        "wrong packing word: code k packed into word k % (K / e) (interleaved) instead of k // e",
        "gemlite/packing.py",
        "words = (codes.view(n, k // per_word, per_word).to(torch.int64) << shifts).sum(dim=-1)",
        "words = (codes.view(n, per_word, k // per_word).transpose(1, 2).to(torch.int64) << shifts)"
        ".sum(dim=-1)",
        focus="A16W1_HQQ_INT",
    ),
    Mutant(
        "splitk_count",
        "off-by-one split-K: GEMV launches floor(K / K_PER_SPLIT) splits, dropping a partial last split",
        "gemlite/kernels/plan.py",
        "return _cdiv(K, k_per_split), k_per_split",
        "return K // k_per_split, k_per_split",
        focus="GEMV and not SPLITK and not REVSPLITK",
    ),
    Mutant(
        "splitk_reduce",
        "off-by-one split-K reduction: the last split's partial sum is never added",
        _COMMON,
        "for s in range(splits):",
        "for s in range(splits - 1):",
        focus="GEMM_SPLITK",
    ),
    Mutant(
        "int8_unsigned",
        "INT8 codes read as unsigned bytes (negative weights become 256 + q)",
        _COMMON,
        "return ((codes ^ 0x80) | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388736.0",
        "return ((codes & 0xFF) | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388608.0",
        focus="A16W8_INT8",
    ),
    Mutant(
        "fp8_format",
        "FP8 weight bytes decoded as e5m2 instead of e4m3",
        _COMMON,
        "return tl.load(ptrs, mask=mask, other=0).to(tl.float8e4nv, bitcast=True)",
        "return tl.load(ptrs, mask=mask, other=0).to(tl.float8e5, bitcast=True)",
        focus="A16W8_FP8",
    ),
    Mutant(
        "workspace_slot",
        "split-K partials all stored in workspace slot 0 (each split overwrites the previous one)",
        _COMMON,
        "tl.store(ws_ptr + pid_k.to(tl.int64) * MN + offs_mn, acc, mask=mask)",
        "tl.store(ws_ptr + offs_mn, acc, mask=mask)",
        focus="GEMM_SPLITK",
    ),
    Mutant(
        "magic_offset",
        "integer-to-float trick off by one: codes come out as q - 1 (2**23 - 1 subtracted)",
        _COMMON,
        "return (codes | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388608.0",
        "return (codes | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388607.0",
        focus="A16W2_HQQ_INT",
    ),
    Mutant(
        "post_scale_float_zero",
        "channel-wise HQQ with float zeros post-scaled: the float zero-point is never subtracted",
        "gemlite/schemes/hqq.py",
        "return not layout.is_grouped and layout.zero_mode is not Zeros.FLOAT",
        "return not layout.is_grouped",
        focus="HQQ and GEMM and not SPLITK",
    ),
    # ---- paths the drawn cases and the path matrix reach (harness.strategies), not the defaults ----
    Mutant(
        "atomic_unscaled",
        "set_deterministic(False), fp16/bf16 out: the last program of an atomic split-K tile returns the "
        "accumulator without the channel scale (post-scaled layouts)",
        _COMMON,
        "            y = apply_epilogue(total, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)",
        "            y = apply_epilogue(total, offs_n, mask_n, s_ptr, b_ptr,\n"
        "                               POST_SCALE and WRITE_MODE == WRITE_PARTIAL, HAS_BIAS)",
        focus="det_off and post and not of32",
        tests=_PATHS,
    ),
    Mutant(
        "atomic_final_bias",
        "set_deterministic(False), fp32 out: every K split adds the bias into the output, not only split 0",
        _COMMON,
        "            acc = acc + tl.where(pid_k == 0, bias, 0.0)",
        "            acc = acc + bias",
        focus="det_off and of32 and not bnone",
        tests=_PATHS,
    ),
    Mutant(
        "bias_before_scale",
        "epilogue order: the bias is added before the channel scale, so post-scaled layouts scale it too",
        _COMMON,
        "    if POST_SCALE:\n"
        "        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n"
        "    if HAS_BIAS:\n"
        "        acc = acc + tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n"
        "    return acc\n",
        "    if HAS_BIAS:\n"
        "        acc = acc + tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n"
        "    if POST_SCALE:\n"
        "        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)\n"
        "    return acc\n",
        focus="post and not bnone",
        tests=_PATHS,
    ),
    Mutant(
        "gemm_k_tail_mask",
        "K-tail mask off by one in GEMM/GEMM_SPLITK: x is read at k = K, against a masked code whose "
        "dequantized value (q - z) * s is not 0",
        "gemlite/kernels/gemm.py",
        "x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None] & (k_idx < K)[None, :], other=0.0)",
        "x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None] & (k_idx <= K)[None, :], other=0.0)",
        focus="(chan or ternary) and GEMM and not DEQUANT",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_k_tail_mask",
        "K-tail mask off by one in the GEMV families: x is read at k = K, against a masked code",
        "gemlite/kernels/gemv.py",
        "x = tl.load(x_row + k_idx, mask=k_idx < K, other=0.0)",
        "x = tl.load(x_row + k_idx, mask=k_idx <= K, other=0.0)",
        focus="(chan or ternary) and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_fp16_dequant",
        "GEMV dequantizes to the activation dtype instead of fp32 (the weights rounded to fp16/bf16 "
        "before the CUDA-core FMAs: the precision GEMV documents is lost)",
        "gemlite/kernels/gemv.py",
        "            POST_SCALE,\n            tl.float32,\n        )\n        acc += tl.sum",
        "            POST_SCALE,\n            x_ptr.dtype.element_ty,\n        )\n        acc += tl.sum",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "dequant_post_scale",
        "DEQUANT=1: the scratch weight of a post-scaled layout misses its channel scale (cuBLAS has no "
        "per-column epilogue to apply it)",
        "gemlite/kernels/dequant.py",
        "    if POST_SCALE:\n        w = w * scale[None, :]\n",
        "",
        focus="DEQUANT and post",
        tests=_PATHS,
    ),
    Mutant(
        "dequant_group",
        "DEQUANT=1: the scale/zero row of a K tile is its tile index (right only when BLOCK_K = group size)",
        "gemlite/kernels/dequant.py",
        "            group = k0 // GROUP_SIZE  # BLOCK_K divides GROUP_SIZE: one group per tile",
        "            group = tl.program_id(0)  # one group per tile",
        focus="DEQUANT and g64",
        tests=_PATHS,
    ),
    Mutant(
        "row_chunk_atomic_ws",
        "row-chunked atomic launches: every chunk accumulates into the first chunk's workspace rows",
        "gemlite/kernels/plan.py",
        "        ws_rows = ws[m0 : m0 + rows] if mode == WRITE_ATOMIC.value and rows != M else ws",
        "        ws_rows = ws[:rows] if mode == WRITE_ATOMIC.value and rows != M else ws",
        focus="chunked and det_off and not of32",
        tests=_PATHS,
    ),
    Mutant(
        "metadata_zero_int",
        "metadata v2 decode reads the integer zero-point from its presence flag (a loaded layer gets zero 1)",
        "gemlite/layout.py",
        "_COMPUTE_CODES[v[13]], v[15] if v[14] else None)",
        "_COMPUTE_CODES[v[13]], v[14] if v[14] else None)",
        focus="state_dict and zint",
        tests=_PATHS,
    ),
    Mutant(
        "packed_input_order",
        "pack(..., packed=True): codes unpacked most significant bits first",
        "gemlite/packing.py",
        "    shifts = torch.arange(per_word, device=packed.device, dtype=torch.int64) * bits",
        "    shifts = (per_word - 1 - torch.arange(per_word, device=packed.device, dtype=torch.int64))"
        " * bits",
        focus="packed_",
        tests=_PATHS,
    ),
    Mutant(
        "bias_fp16",
        "an fp32 bias stored as fp16 at pack time (README: an fp32 bias is kept)",
        "gemlite/schemes/base.py",
        "    return bias.detach().contiguous()",
        "    return (bias.detach().half() if bias.dtype == torch.float32 else bias.detach()).contiguous()",
        focus="bf32 and of32",
        tests=_PATHS,
    ),
    Mutant(
        "channel_scales_fp16",
        "INT8/FP8 channel scales pass through fp16 before their fp32 storage (README: fp32 scales kept)",
        "gemlite/schemes/channelwise.py",
        "WeightSpec(kind, 8), W_q.contiguous(), scales.reshape(n, 1).float().contiguous(), None",
        "WeightSpec(kind, 8), W_q.contiguous(), scales.reshape(n, 1).half().float().contiguous(), None",
        focus="(int8 or fp8) and of32",
        tests=_PATHS,
    ),
    Mutant(
        "hqq_scales_compute_dtype",
        "HQQ scales stored in the activation dtype: fp32 scales rounded to fp16/bf16 (README: kept)",
        "gemlite/schemes/hqq.py",
        '        scales = check_meta_tensor("scales", scales, count, what, device).reshape(n, k // g)',
        '        scales = check_meta_tensor("scales", scales, count, what, device).reshape(n, k // g)'
        ".to(compute_dtype)",
        focus="hqq and of32 and GEMV",
        tests=_PATHS,
    ),
)
