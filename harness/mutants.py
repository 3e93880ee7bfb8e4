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
_ACT_QUANT = "gemlite/kernels/act_quant.py"
# The activation quantizer's own tests (codes and scales bitwise, ties, NaN/zero rows) and the drawn
# dynamic-format cases, whose judge also compares the codes (harness.build.activation_diff).
_ACT_TESTS = ("suites/correctness/test_activation_quant.py", "suites/correctness/test_formats.py")
# The path matrix (`harness.strategies.path_cases`): test ids name the scale mode, the path and the
# settings, so -k selects the cases that run a mutant's path.
_PATHS = ("suites/correctness/test_paths.py",)
# The eager replay cache's tests: on CPU a probe in the layer's cache (the bypass rules) and real Replays
# launched through an interpreter stand-in for the compiled kernel (bitwise against planned calls).
_REPLAY = ("suites/correctness/test_replay.py",)
# The lower-level 8-bit modes' own tests (codes in: every path and output dtype, int32 exactness, the
# scaled_activations layers, GemLite's functional path).
_CODES = "suites/correctness/test_low_level_modes.py"
_MX_TESTS = "suites/correctness/test_mx.py"

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
        "wrong group index: GEMV reads the scale/zero row of the first group for every K step",
        "gemlite/kernels/gemv.py",
        "s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE",
        "s_ptr, z_ptr, 0 * k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE",
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
        "codes = (words.to(tl.int32) >> shifts[None, :, None]) & ((1 << W_BITS) - 1)",
        "codes = (words.to(tl.int32) >> shifts[None, :, None]) & ((2 << W_BITS) - 1)",
        focus="A16W2_HQQ_INT",
    ),
    Mutant(
        "zero_sign_float",
        "float zero-point sign: (q + z) * s instead of (q - z) * s (the words' in-place dequantization)",
        _COMMON,
        "w = tl.fma(q, s, -(zero * scale)[None, None, :])",
        "w = tl.fma(q, s, (zero * scale)[None, None, :])",
        focus="HQQ and GEMM",
    ),
    Mutant(
        "zero_sign_float_codes",
        "float zero-point sign in `dequantize` (DEQUANT tiles; codes cut out one by one)",
        _COMMON,
        "return tl.fma(q, scale, -(zero * scale)).to(DTYPE)",
        "return tl.fma(q, scale, (zero * scale)).to(DTYPE)",
        focus="DEQUANT",
        tests=_PATHS,
    ),
    Mutant(
        "words_signed",
        "in-place fields converted as signed int32 (`fields_in_place`: GEMV and GEMM): a top field with "
        "its high bit set turns negative",
        _COMMON,
        "q = (words.to(tl.int32) & field).to(tl.uint32).to(tl.float32)",
        "q = (words.to(tl.int32) & field).to(tl.float32)",
        focus="HQQ and GEMM",
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
        "acc = acc + load_bias(b_ptr, offs_n, mask_n)",
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
        "fp16 accumulation in GEMV (the running sum rounded to fp16 every loop iteration: two K steps)",
        "gemlite/kernels/gemv.py",
        "        acc += _step(raw0, x0, k0,",
        "        acc = acc.to(tl.float16).to(acc.dtype) + _step(raw0, x0, k0,",
        focus="GEMV and not SPLITK and not REVSPLITK",
    ),
    Mutant(
        "skipped_k_tail",
        "skipped K tail: the GEMV K loop stops at the last full BLOCK_K tile (a tail step that starts "
        "an iteration of two steps is dropped)",
        "gemlite/kernels/gemv.py",
        "for k0 in range(k_start, k_end, 2 * BLOCK_K):",
        "for k0 in range(k_start, k_end - BLOCK_K + 1, 2 * BLOCK_K):",
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
        "int8_f16_unsigned",
        "tensor-core INT8 weights to fp16 without the sign flip (negative weights become 256 + q)",
        _COMMON,
        "return (codes.to(tl.int16) ^ 0x6480).to(tl.float16, bitcast=True) - 1152.0",
        "return (codes.to(tl.int16) | 0x6400).to(tl.float16, bitcast=True) - 1024.0",
        focus="A16W8_INT8 and GEMM",
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
        "tl.store(ws_ptr + pid_k.to(tl.int64) * MN + offs_mn, to_workspace(acc), mask=mask)",
        "tl.store(ws_ptr + offs_mn, to_workspace(acc), mask=mask)",
        focus="GEMM_SPLITK",
    ),
    Mutant(
        "gemv_grouped_field_scale",
        "in-place fields' factor 2**-(p+1) instead of 2**-p (`fields_in_place`: the GEMV's grouped sum "
        "and `dequantize_words`): every code counts half",
        _COMMON,
        "inv = ((127 - pos) << 23).to(tl.float32, bitcast=True)",
        "inv = ((126 - pos) << 23).to(tl.float32, bitcast=True)",
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
        "            acc = acc + tl.where(pid_k == 0, bias, 0)",
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
        "        acc = acc + load_bias(b_ptr, offs_n, mask_n)\n"
        "    return acc\n",
        "    if HAS_BIAS:\n"
        "        acc = acc + load_bias(b_ptr, offs_n, mask_n)\n"
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
        "x = tl.load(x_row + k_idx, mask=(k_idx < K) & live, other=0.0)",
        "x = tl.load(x_row + k_idx, mask=(k_idx <= K) & live, other=0.0)",
        focus="(chan or ternary) and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_second_step_stale_tile",
        "the GEMV loop's second K step multiplies the first step's weight tile (both tiles are loaded "
        "before either is used)",
        "gemlite/kernels/gemv.py",
        "            acc += _step(raw1, x1, k1,",
        "            acc += _step(raw0, x1, k1,",
        focus="HQQ and GEMV",
    ),
    Mutant(
        "gemv_pair_stale_row",
        "a GEMV program of two rows multiplies the first row's x into the second row's sums (the pair "
        "shares each weight tile, not its activations)",
        "gemlite/kernels/gemv.py",
        "            acc1 += _step(raw0, y0, k0,",
        "            acc1 += _step(raw0, x0, k0,",
        focus="GEMV and not SPLITK and not REVSPLITK",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_grouped_zero_fp16",
        "GEMV's grouped sum adds the zero-point term's x in fp16 (rounded row sums: the fp32 precision "
        "GEMV documents is lost)",
        "gemlite/kernels/gemv.py",
        "    sx = tl.sum(x, axis=1)\n",
        "    sx = tl.sum(x.to(tl.float16), axis=1).to(tl.float32)\n",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_subnormal_high_fields",
        "GEMV's subnormal fields: the fields above bit 23 taken from the word shifted by 9, not 8 (every "
        "such code read at half its value, its neighbour's low bit mixed in)",
        "gemlite/kernels/gemv.py",
        "src = tl.where(high, words.to(tl.int32) >> 8, words.to(tl.int32))",
        "src = tl.where(high, words.to(tl.int32) >> 9, words.to(tl.int32))",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_subnormal_scale_back",
        "GEMV's subnormal fields: a row's sum multiplied back by 2**(SUB_SHIFT - 1), not 2**SUB_SHIFT "
        "(every output half its value)",
        "gemlite/kernels/gemv.py",
        "acc_n = acc_n * pow2(SUB_SHIFT)",
        "acc_n = acc_n * pow2(SUB_SHIFT - 1)",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_subnormal_shift",
        "GEMV's subnormal fields scaled by 2**-36, not 2**-37: fp16 x near 65504 times the lowest field's "
        "factor overflows to inf (only the ends of fp16's range show it)",
        "gemlite/kernels/gemv.py",
        "SUB_SHIFT = tl.constexpr(37)",
        "SUB_SHIFT = tl.constexpr(36)",
        focus="ends_of_its_range",
        tests=("suites/correctness/test_robustness.py",),
    ),
    Mutant(
        "gemv_paired_group_boundary",
        "GEMV pairs an iteration's two K steps whenever BLOCK_K divides the group size, not 2 * BLOCK_K: "
        "with groups of one step, the second step's sums take the first one's scale and zero",
        "gemlite/kernels/gemv.py",
        "(EVEN_PAIRS and GROUP_SIZE % (2 * BLOCK_K) == 0)",
        "(EVEN_PAIRS and GROUP_SIZE % BLOCK_K == 0)",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_paired_alignment",
        "GEMV pairs K steps without the plan's EVEN_PAIRS: a split starting at an odd step pairs steps "
        "across a group boundary (one scale for both)",
        "gemlite/kernels/plan.py",
        "EVEN_PAIRS=k_per_split % (2 * config.BLOCK_K) == 0,",
        "EVEN_PAIRS=True,",
        focus="mid_group",
        tests=("suites/correctness/test_robustness.py",),
    ),
    Mutant(
        "gemv_paired_zero",
        "GEMV's paired steps subtract the zero times the first step's sum of x twice, not both steps' sums",
        "gemlite/kernels/gemv.py",
        "_apply_group(p0 + p1, sx0 + sx1,",
        "_apply_group(p0 + p1, sx0 + sx0,",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_paired_stale_row",
        "a two-row GEMV program's paired steps multiply the first row's x of the second step into the "
        "second row's sums (the paired path's own loads, apart from the unpaired one's)",
        "gemlite/kernels/gemv.py",
        "acc1 += _paired_partial(raw0, y0, raw1, y1,",
        "acc1 += _paired_partial(raw0, y0, raw1, x1,",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_pair_row_scale",
        "a two-row GEMV program scales its second row by the first row's activation scale (per-token "
        "dynamic codes at M = 2)",
        "gemlite/kernels/gemv.py",
        "acc1_n = _row_result(acc1, row1,",
        "acc1_n = _row_result(acc1, row0,",
        focus="dyn and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "gemv_split_end_unclamped",
        "the GEMV's last K split runs to k_start + K_PER_SPLIT, not K: where BLOCK_K divides K (no K "
        "masks) it reads weight rows past the end",
        "gemlite/kernels/gemv.py",
        "k_end = tl.minimum(k_start + K_PER_SPLIT, K)",
        "k_end = k_start + K_PER_SPLIT",
        focus="pre and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "dequant_post_scale",
        "DEQUANT=1: the scratch weight of a post-scaled layout misses its channel scale (cuBLAS has no "
        "per-column epilogue to apply it)",
        "gemlite/kernels/dequant.py",
        "        if POST_SCALE:\n            w = w * scale[None, :]\n",
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
    # ---- the eager replay cache (gemlite.matmul.run, gemlite.kernels.plan.Replay): on CPU through the
    #      probe and the interpreter's stand-in for a compiled launcher (suites/correctness/test_replay.py)
    Mutant(
        "replay_bias_unchecked",
        "a stale replay: gemlite.matmul.run takes a layer's kept launch after its bias was replaced",
        "gemlite/matmul.py",
        "and tensors[3] is bias and tensors[4] is locks",
        "and tensors[4] is locks",
        focus="used_only_while or follows_the_layers_tensors",
        tests=_REPLAY,
    ),
    Mutant(
        "replay_alignment_unchecked",
        "a replay taken for an x that is not 16-byte aligned (its kernel was specialized for aligned x)",
        "gemlite/matmul.py",
        "                    and (x.data_ptr() % 16 == 0) == replay.aligned\n",
        "",
        focus="used_only_while",
        tests=_REPLAY,
    ),
    Mutant(
        "replay_out_dtype",
        "a replay allocates its output in x's dtype, not the layer's output dtype (fp32 layers get fp16)",
        "gemlite/kernels/plan.py",
        "self.out_dtype = out.dtype",
        "self.out_dtype = x.dtype",
        focus="interpreted_replays_equal and of32",
        tests=_REPLAY,
    ),
    Mutant(
        "replay_ws_not_zeroed",
        "set_deterministic(False), fp16/bf16 out: a replay's fp32 atomic workspace is not zeroed per call",
        "gemlite/kernels/plan.py",
        "per_call[_WS] = (torch.zeros if self.ws_zeroed else torch.empty)(",
        "per_call[_WS] = torch.empty(",
        focus="interpreted_replays_equal and det_off and of16",
        tests=_REPLAY,
    ),
    Mutant(
        "x_row_stride",
        "x with unit stride along K but rows further apart (a slice of a wider tensor) is not made "
        "contiguous, while the launch passes a row stride of K",
        "gemlite/matmul.py",
        "    x = x.contiguous()\n",
        "    x = x if x.stride(-1) == 1 else x.contiguous()\n",
        focus="strided",
        tests=("suites/correctness/test_robustness.py",),
    ),
    Mutant(
        "hqq_zeros_compute_dtype",
        "HQQ float zeros stored in the activation dtype: fp32 zeros rounded to fp16/bf16 (README: kept)",
        "gemlite/schemes/hqq.py",
        'zeros = check_meta_tensor("zeros", zeros, count, what, device).reshape(n, k // g).contiguous()',
        'zeros = check_meta_tensor("zeros", zeros, count, what, device).reshape(n, k // g)'
        ".to(compute_dtype).contiguous()",
        focus="pre and of32 and GEMV",
        tests=_PATHS,
    ),
    # ---- dynamic activation quantization (gemlite/kernels/act_quant.py, the X_QUANT epilogue) ----------
    Mutant(
        "act_scale_per_tensor",
        "activation scale per tensor instead of per token: the quantizer's amax runs over all of x",
        _ACT_QUANT,
        "    for k0 in range(0, K, BLOCK_K):\n"
        "        x = tl.load(x_row + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)\n",
        "    for k0 in range(0, K * tl.num_programs(0), BLOCK_K):\n"
        "        x = tl.load(x_ptr + k0 + offs, mask=k0 + offs < K * tl.num_programs(0), other=0.0)"
        ".to(tl.float32)\n",
        focus="test_codes_and_scales or dynamic",
        tests=_ACT_TESTS,
    ),
    Mutant(
        "act_scale_twice",
        "activation scale applied twice in the GEMM epilogue (acc * s_x * s_x)",
        "gemlite/kernels/gemm.py",
        "acc = acc.to(tl.float32) * tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)[:, None]",
        "xs = tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)[:, None]\n"
        "        acc = acc.to(tl.float32) * xs * xs",
        focus="dynamic and GEMM",
    ),
    Mutant(
        "gemv_act_scale_dropped",
        "GEMV families never apply the activation scale (the integer-code product is returned)",
        "gemlite/kernels/gemv.py",
        "acc_n = acc_n * tl.load(xs_ptr + row)",
        "acc_n = acc_n",
        focus="dynamic and GEMV",
    ),
    Mutant(
        "act_round_trunc",
        "rounding mode: INT8 activation codes truncated toward zero instead of rounded",
        _ACT_QUANT,
        "return tl.minimum(whole + tl.where(q - whole >= 0.5, 1.0, 0.0), INT8_MAX)",
        "return tl.minimum(whole, INT8_MAX)",
        focus="int8 and (dynamic or activation_quant)",
        tests=_ACT_TESTS,
    ),
    Mutant(
        "act_round_half_even",
        "rounding mode: INT8 activation ties rounded to even (torch.round) instead of away from zero",
        _ACT_QUANT,
        "return tl.minimum(whole + tl.where(q - whole >= 0.5, 1.0, 0.0), INT8_MAX)",
        "up = (q - whole > 0.5) | ((q - whole == 0.5) & (whole % 2.0 == 1.0))\n"
        "    return tl.minimum(whole + tl.where(up, 1.0, 0.0), INT8_MAX)",
        focus="ties",
        tests=("suites/correctness/test_activation_quant.py",),
    ),
    Mutant(
        "act_double_rounding",
        "activation quotient rounded twice (to fp32, then to the code): no round-to-odd step",
        _ACT_QUANT,
        "bits = tl.where(inexact_even, bits + tl.where(remainder > 0.0, 1, -1), bits)",
        "bits = tl.where(inexact_even, bits, bits)",
        focus="below_a_tie",
        tests=("suites/correctness/test_activation_quant.py",),
    ),
    Mutant(
        "act_e4m3_toward_zero",
        "rounding mode: FP8 activation codes rounded toward zero instead of to nearest even",
        _ACT_QUANT,
        "    v = (a + magic) - magic\n",
        "    v = (a + magic) - magic\n    v = tl.where(v > a, v - magic * 1.1920928955078125e-07, v)\n",
        focus="fp8 and (dynamic or activation_quant)",
        tests=_ACT_TESTS,
    ),
    Mutant(
        "act_no_scale_floor",
        "no 1e-6 floor on the activation scale: an all-zero row divides 0 by 0",
        _ACT_QUANT,
        "    s = tl.maximum(s, SCALE_FLOOR)\n",
        "",
        focus="all_zero_row",
        tests=_ACT_TESTS,
    ),
    Mutant(
        "gemm_direct8_stale_k",
        "8-bit codes against 8-bit activations (the typed loads): every K tile reads the weight's first "
        "K tile",
        "gemlite/kernels/gemm.py",
        "    w = tl.load(w_cols + k_idx[:, None] * stride_wk, mask=mask_n[None, :])",
        "    w = tl.load(w_cols + (k_idx % k_idx.shape[0])[:, None] * stride_wk, mask=mask_n[None, :])",
        focus="dynamic and GEMM",
    ),
    Mutant(
        "gemm_zero_sums_stale_chunk",
        "8-bit activations against float zeros (GEMM/GEMM_SPLITK): every K tile's zero-point term takes "
        "the row's first tile of code sums",
        "gemlite/kernels/gemm.py",
        "offs_c = k0 // SUM_CHUNK + tl.arange(0, BLOCK_K // SUM_CHUNK)",
        "offs_c = tl.arange(0, BLOCK_K // SUM_CHUNK)",
        focus="dynamic and GEMM",
    ),
    Mutant(
        "codes_scratch_byte",
        "DEQUANT=1 codes scratch (A8W4 / A8W2 HQQ dynamic): the e4m3 byte's exponent one too small "
        "(every nonzero code halved)",
        "gemlite/kernels/dequant.py",
        "byte = tl.where(codes == 0, 0, (((bits >> 23) - 120) << 3) | ((bits >> 20) & 7))",
        "byte = tl.where(codes == 0, 0, (((bits >> 23) - 121) << 3) | ((bits >> 20) & 7))",
        focus="DEQUANT and dyn",
        tests=_PATHS,
    ),
    Mutant(
        "act_sums_of_magnitudes",
        "the per-token quantizer sums the codes' magnitudes (the zero-point term of float zeros then "
        "charges negative activations with the wrong sign)",
        _ACT_QUANT,
        "chunk = tl.sum(tl.reshape(value, (BLOCK_K // SUM_CHUNK, SUM_CHUNK)), axis=1)",
        "chunk = tl.sum(tl.reshape(tl.abs(value), (BLOCK_K // SUM_CHUNK, SUM_CHUNK)), axis=1)",
        focus="dynamic or sums or reference",
        tests=_ACT_TESTS,
    ),
    Mutant(
        "block_act_scale_index",
        "1 x 128 activation blocks: every K tile of GEMM/GEMM_SPLITK takes the row's first block scale",
        "gemlite/kernels/gemm.py",
        "xs_blk = xs_ptr + offs_m.to(tl.int64) * (K // X_GROUP) + k0 // X_GROUP",
        "xs_blk = xs_ptr + offs_m.to(tl.int64) * (K // X_GROUP)",
        focus="block and GEMM",
    ),
    Mutant(
        "block_weight_scale_unused",
        "128 x 128 weight blocks on GEMV: the block scale is never applied (the codes are used as weights)",
        _COMMON,
        "return (int8_to_f32(codes.to(tl.int32)) * scale).to(DTYPE)",
        "return int8_to_f32(codes.to(tl.int32)).to(DTYPE)",
        focus="INT8_block and GEMV",
    ),
    Mutant(
        "act_nonfinite_ignored",
        "rows with Inf are quantized as finite ones (only NaN poisons the scale): wrong finite codes",
        _ACT_QUANT,
        "bad = bad | ((x != x) | (ax == float(\"inf\"))).to(tl.int32)",
        "bad = bad | (x != x).to(tl.int32)",
        focus="nonfinite",
        tests=("suites/correctness/test_activation_quant.py",),
    ),
    # ---- microscaled weights (MXFP8, MXFP4, NVFP4: gemlite/schemes/mx.py, common.dequantize_mx) --------
    Mutant(
        "e8m0_bias",
        "e8m0 scale bias off by one: byte b decoded as 2**(b - 126), every MX weight twice too large",
        _COMMON,
        "return tl.maximum(e << 23, E8M0_SUBNORMAL_BITS).to(tl.float32, bitcast=True)",
        "return tl.maximum((e + 1) << 23, E8M0_SUBNORMAL_BITS).to(tl.float32, bitcast=True)",
        focus="A16W4_MXFP or A16W8_MXFP",
    ),
    Mutant(
        "nvfp4_tensor_scale_dropped",
        "NVFP4's tensor scale dropped: W = e2m1(q) * s_g instead of e2m1(q) * s_g / ts",
        _COMMON,
        "return b.to(tl.float8e4nv, bitcast=True).to(tl.float32) * (1.0 / tl.load(z_ptr))",
        "return b.to(tl.float8e4nv, bitcast=True).to(tl.float32)",
        focus="A16W4_NVFP",
    ),
    Mutant(
        "mx_nibble_order",
        "e2m1 pairs stored in swapped nibble order (the even k in the high nibble of each byte)",
        "gemlite/schemes/mx.py",
        "            w_q = pack_codes(canonical.codes, 4, layout.word_bits).t().contiguous()",
        "            swapped = canonical.codes.reshape(-1, 2).flip(-1).reshape(canonical.codes.shape)\n"
        "            w_q = pack_codes(swapped.contiguous(), 4, layout.word_bits).t().contiguous()",
        focus="A16W4_MXFP",
    ),
    Mutant(
        "e2m1_sign_bit",
        "e2m1 sign read from bit 2 instead of bit 3 (the magnitude's top bit flips signs): "
        "`e2m1_fields`' second copy multiplied in one bit too high (the GEMV's in-place codes and the "
        "GEMM tiles' alike)",
        _COMMON,
        "(one << (28 - p))",
        "(one << (29 - p))",
        focus="mx and (GEMV or GEMM_SPLITK)",
        tests=_PATHS,
    ),
    Mutant(
        "mx_gemv_group",
        "GEMV reads the MX scale of its K step's first word for every word of the step",
        "gemlite/kernels/gemv.py",
        "(k0 + offs_r * E)[:, None, None], K,",
        "(k0 + offs_r * 0)[:, None, None], K,",
        focus="mx and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "e2m1_gemv_group",
        "GEMV's in-place e2m1 step reads the scale of its first word for every word of the step",
        "gemlite/kernels/gemv.py",
        "    k_rows = (k0 + offs_r * E)[:, None, None]",
        "    k_rows = (k0 + offs_r * 0)[:, None, None]",
        focus="mx and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "e2m1_gemv_high_codes",
        "GEMV's in-place e2m1 fields take the word's top two codes from the word shifted down by 4, not 8 "
        "(the shift that the field positions below assume)",
        "gemlite/kernels/gemv.py",
        "    src = tl.where(high, w >> 8, w)",
        "    src = tl.where(high, w >> 4, w)",
        focus="mx and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "e2m1_gemv_subnormal_shift",
        "GEMV's in-place e2m1 step pre-scales fp16 x by 2**(125 - SUB_SHIFT), not 2**(126 - SUB_SHIFT): "
        "every fp16 MXFP4 / NVFP4 product half as large (the bf16 path is exact)",
        "gemlite/kernels/gemv.py",
        "        p = tl.sum((x * pow2(126 - SUB_SHIFT)) * v, axis=1, keep_dims=True)",
        "        p = tl.sum((x * pow2(125 - SUB_SHIFT)) * v, axis=1, keep_dims=True)",
        focus="mx and GEMV",
        tests=_PATHS,
    ),
    Mutant(
        "e2m1_ties_down",
        "e2m1 quantization breaks ties toward zero (public GemLite's threshold rule), not to even",
        "gemlite/schemes/mx.py",
        "        + (a >= 0.75)\n        + (a > 1.25)\n        + (a >= 1.75)\n",
        "        + (a > 0.75)\n        + (a > 1.25)\n        + (a > 1.75)\n",
        focus="quantizers or e2m1",
        tests=("suites/correctness/test_mx.py",),
    ),
    # ---- microscaled activations (A8W{8,4}_MXFP_dynamic, A4W4_MXFP_dynamic, A4W4_NVFP_dynamic:
    #      act_quant.quantize_mx_kernel / amax_kernel, common.load_act_mx / nvfp4_out_scale) ---------------
    Mutant(
        "mx_act_group_index",
        "wrong activation scale group: the K loop reads the scale byte of group k // (2 * G)",
        _COMMON,
        "s = tl.load(xs_ptr + rows * (K // G) + k // G, mask=m, other=0)",
        "s = tl.load(xs_ptr + rows * (K // G) + k // (2 * G), mask=m, other=0)",
        focus="mx_activation_k_tails or (A4W4_NVFP_dynamic and GEMM)",
        tests=(_MX_TESTS, "suites/correctness/test_formats.py"),
    ),
    Mutant(
        "mx_act_exponent",
        "MX activation scale exponent off by one: ceil(log2(amax / 448)) + 1 (codes half as large)",
        _ACT_QUANT,
        "e = binade - (127 + 8) + (mantissa > 0x600000).to(tl.int32)",
        "e = binade - (127 + 7) + (mantissa > 0x600000).to(tl.int32)",
        focus="mx_activation_codes or A8W8_MXFP_dynamic",
        tests=(_MX_TESTS, "suites/correctness/test_formats.py"),
    ),
    Mutant(
        "mx_act_nibble_order",
        "e2m1 activation codes read in swapped nibble order (the even k from the high nibble)",
        _COMMON,
        "v = e2m1_to_f32((b >> ((k % 2) * 4)) & 15)",
        "v = e2m1_to_f32((b >> ((1 - k % 2) * 4)) & 15)",
        focus="mx_activation_known_vectors and A4W4",
        tests=(_MX_TESTS,),
    ),
    Mutant(
        "nvfp4_act_tensor_scale_dropped",
        "NVFP4 activations: the accumulator is divided by the weight's tensor scale only, not by ts_x",
        _COMMON,
        "return tl.math.div_rn(1.0, tl.load(xt_ptr + 1) * tl.load(z_ptr))",
        "return tl.math.div_rn(1.0, tl.load(z_ptr))",
        focus="mx_activation_known_vectors and NVFP",
        tests=(_MX_TESTS,),
    ),
    Mutant(
        "act_e2m1_ties_down",
        "e2m1 activation codes break the 0.75 tie toward zero (to index 1) instead of to even",
        _ACT_QUANT,
        "mag += _above(p, err, 0.75 * s, True).to(tl.int32)",
        "mag += _above(p, err, 0.75 * s, False).to(tl.int32)",
        focus="mx_activation_ties",
        tests=(_MX_TESTS,),
    ),
    Mutant(
        "nvfp4_act_amax_nonfinite",
        "NVFP4's tensor amax takes NaN / Inf too: one bad value corrupts the scale of every row",
        _ACT_QUANT,
        'amax = tl.maximum(amax, tl.where(ax < float("inf"), ax, 0.0))  # NaN and Inf left out',
        "amax = tl.maximum(amax, ax)",
        focus="nonfinite and NVFP",
        tests=(_MX_TESTS,),
    ),
    Mutant(
        "gemv_mx_act_row",
        "GEMV reads the microscaled activations of row 0 for every row",
        "gemlite/kernels/gemv.py",
        "return load_act_mx(x_ptr, xs_ptr, row.to(tl.int64), k_idx,",
        "return load_act_mx(x_ptr, xs_ptr, row.to(tl.int64) * 0, k_idx,",
        focus="mx_activation_k_tails and GEMV",
        tests=(_MX_TESTS,),
    ),
    # ---- 8-bit codes given by the caller (A8W8_INT8 / A8W8_FP8) and GemLite's functional path --------
    Mutant(
        "int32_out_through_fp32",
        "int8 x int8 codes, int32 output: the int32 sums go through fp32 on the way out (inexact past 2**24)",
        _COMMON,
        "    if acc.dtype == tl.int32 and out_ptr.dtype.element_ty != tl.int32:\n"
        "        acc = acc.to(tl.float32)\n",
        "    if acc.dtype == tl.int32:\n        acc = acc.to(tl.float32)\n",
        focus="exact_integer or (A8W8_INT8 and not dynamic)",
        tests=(_CODES, "suites/correctness/test_formats.py"),
    ),
    Mutant(
        "int32_workspace_values",
        "split-K int32 partials stored in the fp32 workspace as values, read back as bits",
        _COMMON,
        "        return acc.to(tl.float32, bitcast=True)\n",
        "        return acc.to(tl.float32)\n",
        focus="int32 and (SPLITK or GEMV) and det_on",
        tests=(_CODES,),
    ),
    Mutant(
        "gemv_int8_codes_unsigned",
        "GEMV's int32 path reads the int8 weight bytes unsigned (negative weights become 256 + q)",
        "gemlite/kernels/gemv.py",
        "return tl.sum(x * ((codes ^ 0x80) - 128), axis=1)",
        "return tl.sum(x * codes, axis=1)",
        focus="A8W8_INT8 and GEMV",
        tests=(_CODES,),
    ),
    Mutant(
        "gemv_fp8_codes_scaled",
        "GEMV multiplies unscaled e4m3 weight codes by the (absent) scale: every output 0",
        "gemlite/kernels/gemv.py",
        "            POST_SCALE or not PRE_SCALE,  # exact codes unless scales multiply each weight\n",
        "            POST_SCALE,\n",
        focus="A8W8_FP8 and GEMV",
        tests=(_CODES,),
    ),
    Mutant(
        "gemm_fp8_pairs_drop_last",
        "GEMM's two-tiles-an-iteration fp8 loop never adds the last pair's second product (one K tile of "
        "every split lost)",
        "gemlite/kernels/gemm.py",
        "        acc += lag1\n        k_first = K",
        "        k_first = K",
        focus="fp8_tile_pairs or (A8W8_FP8 and GEMM)",
        tests=("suites/correctness/test_kernels.py", "suites/correctness/test_formats.py"),
    ),
    Mutant(
        "scaled_mm_weight_scale_dropped",
        "DEQUANT=1 on A8W8_FP8_dynamic (cuBLAS's fp8 GEMM): the weight's channel scales never reach it "
        "(every column off by its scale)",
        "gemlite/kernels/plan.py",
        "        scales.view(1, N), bias, out,\n",
        "        torch.ones_like(scales).view(1, N), bias, out,\n",
        focus="scaled_mm or (fp8-dyn and DEQUANT)",
        tests=("suites/correctness/test_kernels.py", "suites/correctness/test_paths.py"),
    ),
    Mutant(
        "scaled_mm_bias_dropped",
        "DEQUANT=1 on A8W8_FP8_dynamic: a bias of another dtype than the output (an fp32 bias), or any "
        "bias with an fp32 output, is never added to cuBLAS's fp32 product",
        "gemlite/kernels/plan.py",
        "    torch.add(acc, bias, out=out)  # in fp32",
        "    out.copy_(acc)  # in fp32",
        focus="scaled_mm or (fp8-dyn and DEQUANT)",
        tests=("suites/correctness/test_kernels.py", "suites/correctness/test_paths.py"),
    ),
    Mutant(
        "operands_scratch_nvfp4_one_tensor_scale",
        "DEQUANT=1 on NVFP4 x NVFP4 (both operands dequantized for cuBLAS): the product divided by the "
        "activations' tensor scale only, the weight's forgotten",
        "gemlite/kernels/dequant.py",
        "acc = acc * nvfp4_out_scale(xt_ptr, z_ptr)",
        "acc = acc / tl.load(xt_ptr + 1)",
        focus="DEQUANT and nvact",
        tests=_PATHS,
    ),
    Mutant(
        "functional_unscaled_activations",
        "get_meta_args says scaled_activations=0 for a layer that quantizes its activations per token, so "
        "GemLite's functional path multiplies x's fp16 values instead of its codes",
        "gemlite/compat.py",
        "        int(act.is_dynamic),\n",
        "        0,\n",
        focus="functional or scaled_activations or gemlites_saved",
        tests=(_CODES,),
    ),
)
