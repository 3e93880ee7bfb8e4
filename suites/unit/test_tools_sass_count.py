"""tools/sass_count.py's listing parser: what it calls the K loop is the largest backward branch's body."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "tools" / "sass_count.py"
_spec = importlib.util.spec_from_file_location("sass_count", _PATH)
sass_count = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass_count)

LISTING = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;                    /* 0x00000a0000017a02 */
        /*0010*/                   S2R R0, SR_TID.X ;                        /* 0x0000000000007919 */
        /*0020*/                   LOP3.LUT R2, R0, 0xf, RZ, 0xc0, !PT ;     /* 0x0000000f00027812 */
        /*0030*/                   FFMA R3, R2, R2, R3 ;                     /* 0x0000000202037223 */
        /*0040*/               @P0 BRA 0x20 ;                                /* 0xfffffffc00000947 */
        /*0050*/                   I2FP.F32.U32 R4, R2 ;                     /* 0x0000000200047245 */
        /*0060*/                   FADD R4, R4, R3 ;                         /* 0x0000000304047221 */
        /*0070*/              @!P1 BRA 0x50 ;                                /* 0xfffffffc00000947 */
        /*0080*/                   BRA 0x90 ;                                /* 0xfffffffc00000947 */
        /*0090*/                   EXIT ;                                    /* 0x000000000000794d */
"""


def test_parse_sass_reads_every_instruction_with_its_opcode():
    instrs = sass_count.parse_sass(LISTING)
    assert [addr for addr, _, _ in instrs] == list(range(0, 0xA0, 0x10))
    assert [op for _, op, _ in instrs][:3] == ["MOV", "S2R", "LOP3.LUT"]
    assert instrs[4][1] == "BRA"  # the predicate is not the opcode


def test_innermost_loop_is_the_largest_backward_branch_body():
    loop = sass_count.innermost_loop(sass_count.parse_sass(LISTING))
    # 0x20..0x40 (3 instructions) and 0x50..0x70 (3): the first of equal size; forward BRA ignored
    assert [addr for addr, _, _ in loop] == [0x20, 0x30, 0x40]
    wider = sass_count.parse_sass(LISTING.replace("@P0 BRA 0x20", "@P0 BRA 0x0"))
    assert [addr for addr, _, _ in sass_count.innermost_loop(wider)] == [0x0, 0x10, 0x20, 0x30, 0x40]


def test_no_backward_branch_no_loop():
    assert sass_count.innermost_loop(sass_count.parse_sass(LISTING.split("/*0040*/")[0])) == []
