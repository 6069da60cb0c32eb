"""benchmarks/triton_offline.py's reading of cuobjdump output (the compile itself needs `make triton-offline`)."""
from benchmarks import triton_offline

SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;                       /* 0x00000a0000017a02 */
        /*0010*/                   STL [R1], R2 ;                               /* 0x0000000201007387 */
        /*0020*/                   LDGSTS.E.BYPASS.128 [R3], desc[UR4][R4.64] ; /* 0x0000000004037fae */
        /*0030*/                   LDS.128 R8, [R20] ;                          /* 0x0000000014087984 */
        /*0040*/                   F2FP.F16.E4M3.UNPACK_B R5, R8 ;              /* 0x0000000800057202 */
        /*0050*/                   HGMMA.64x16x16.F32.BF16 R24, R60, gdesc[UR12], R24 ; /* 0x00 */
        /*0060*/                   UTMALDG.2D [UR8], [UR10] ;                   /* 0x00 */
        /*0070*/               @P0 BRA 0x30 ;                                   /* 0x00 */
        /*0080*/                   LDL R2, [R1] ;                               /* 0x00 */
        /*0090*/              @!P1 BRA 0x80 ;                                   /* 0x00 */
        /*00a0*/                   EXIT ;                                       /* 0x00 */
"""
USAGE = "Function mxfp4_expert_matmul:\n  REG:120 STACK:8 SHARED:0 LOCAL:8 CONSTANT[0]:584"


def test_sass_report_finds_the_hot_loop_and_what_is_in_it():
    r = triton_offline.sass_report(SASS, USAGE)
    assert r["loop_instructions"] == 5                     # 0x30..0x70: the longest backward branch
    assert (r["hgmma"], r["fp8_cvt"], r["cp_async"], r["tma"]) == (1, 1, 0, 1)
    assert (r["registers"], r["stack"], r["local"]) == (120, 8, 8)
    assert (r["spill_stores"], r["spill_loads"]) == (1, 1)
    row = {"kernel": "k", "route": "kperm", "kind": "decode", "tiles": "tm=16", "per_weight": 6.0, "target": 5.5,
           **r}
    assert triton_offline.verdict(row) == "MISS: > 5.5/weight, spills"
