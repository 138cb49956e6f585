from bench.common import cpu_description

INTEL = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_the_cpu_is_named_with_the_instruction_sets_that_set_its_gemm_speed():
    assert cpu_description(INTEL) == {"model": "Intel(R) Xeon(R) Platinum 8480+",
                                      "simd": ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]}
    amd = "model name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n"
    assert cpu_description(amd) == {"model": "AMD EPYC", "simd": ["avx2"]}
