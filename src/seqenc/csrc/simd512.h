/* AVX-512 counterparts of simd.h's helpers, the instruction-set levels the kernels choose
 * between at run time, and the entry points of avx512.c and peak.c. */
#ifndef SEQENC_SIMD512_H
#define SEQENC_SIMD512_H
#include "simd.h"

#ifdef SEQENC_X86
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Kernel sets, best last; module.c reports which this CPU runs. */
enum { ISA_AVX2 = 0, ISA_AVX512 = 1, ISA_AVX512BF16 = 2, ISA_AMX = 3 };
/* Element types the elementwise kernels read and write. */
enum { DTYPE_F32 = 0, DTYPE_BF16 = 1 };
/* peak.c's probes. */
enum { PEAK_FMA256 = 0, PEAK_FMA512 = 1, PEAK_BF16DOT512 = 2, PEAK_VNNI512 = 3,
       PEAK_AMXBF16 = 4, PEAK_AMX_INT8 = 5 /* tdpbusd tiles (gemm_int8_amx.c) */ };

/* exp(x), x in [-87, 88]: the same range reduction and polynomial as simd.h's exp256 (Cody &
 * Waite's two-part ln 2, Cephes' degree-5 minimax), 16 lanes; relative error <= 2e-7. */
AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);  /* p * 2^n */
}

/* Phi(x) = erfc(-x / sqrt 2) / 2: simd.h's normal_cdf256 with 16 lanes, the same
 * algorithm and constants (Numerical Recipes' erfcc, z^2 carried exactly into exp), so the same
 * relative bound (kernels.GELU_RELATIVE_ERROR) holds. */
AVX512 static inline __m512 normal_cdf512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    const __m512 a = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(14.0f));
    const __m512 z = _mm512_mul_ps(a, _mm512_set1_ps(0.70710678118654752f));
    const __m512 d = _mm512_fmadd_ps(z, half, one);
    __m512 t = _mm512_rcp14_ps(d);                                /* 14 bits, then Newton */
    t = _mm512_fmadd_ps(t, _mm512_fnmadd_ps(d, t, one), t);
    __m512 c = _mm512_set1_ps(0.17087277f);
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(-0.82215223f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(1.48851587f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(-1.13520398f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(0.27886807f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(-0.18628806f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(0.09678418f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(0.37409196f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(1.00002368f));
    c = _mm512_fmadd_ps(c, t, _mm512_set1_ps(-1.26551223f));
    const __m512 hi = _mm512_mul_ps(a, a), lo = _mm512_fmsub_ps(a, a, hi);
    const __m512 h = _mm512_mul_ps(hi, _mm512_set1_ps(-0.5f));
    const __m512 s = _mm512_add_ps(h, c);
    const __m512 bb = _mm512_sub_ps(s, h);
    __m512 e = _mm512_add_ps(_mm512_sub_ps(h, _mm512_sub_ps(s, bb)), _mm512_sub_ps(c, bb));
    e = _mm512_fnmadd_ps(lo, half, e);
    __m512 erfc = _mm512_mul_ps(t, exp512(s));
    erfc = _mm512_fmadd_ps(erfc, e, erfc);
    const __m512 tail = _mm512_mul_ps(erfc, half);
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(negative, _mm512_sub_ps(one, tail), tail);
}

/* v Phi(v) for four vectors at once: normal_cdf512's and exp512's arithmetic step by step
 * across the four (the same bits as v * normal_cdf512(v) for each; simd.h's gelu256x4 with 16
 * lanes), four independent chains for the CPU to overlap (gemm_f32.c's GELU epilogue). */
#define X4_512 _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
AVX512 static inline void gelu512x4(__m512 v[4]) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 a[4], d[4], t[4], c[4], hi[4], lo[4], h[4], s[4], bb[4], e[4], x[4], n[4], r[4], p[4];
    X4_512 a[j] = _mm512_min_ps(_mm512_abs_ps(v[j]), _mm512_set1_ps(14.0f));
    X4_512 d[j] = _mm512_fmadd_ps(_mm512_mul_ps(a[j], _mm512_set1_ps(0.70710678118654752f)),
                                  half, one);
    X4_512 t[j] = _mm512_rcp14_ps(d[j]);
    X4_512 t[j] = _mm512_fmadd_ps(t[j], _mm512_fnmadd_ps(d[j], t[j], one), t[j]);
    X4_512 c[j] = _mm512_fmadd_ps(_mm512_set1_ps(0.17087277f), t[j], _mm512_set1_ps(-0.82215223f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(1.48851587f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-1.13520398f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.27886807f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-0.18628806f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.09678418f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.37409196f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(1.00002368f));
    X4_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-1.26551223f));
    X4_512 {
        hi[j] = _mm512_mul_ps(a[j], a[j]);
        lo[j] = _mm512_fmsub_ps(a[j], a[j], hi[j]);
        h[j] = _mm512_mul_ps(hi[j], _mm512_set1_ps(-0.5f));
        s[j] = _mm512_add_ps(h[j], c[j]);
        bb[j] = _mm512_sub_ps(s[j], h[j]);
        e[j] = _mm512_add_ps(_mm512_sub_ps(h[j], _mm512_sub_ps(s[j], bb[j])),
                             _mm512_sub_ps(c[j], bb[j]));
        e[j] = _mm512_fnmadd_ps(lo[j], half, e[j]);
    }
    /* exp512(s) */
    X4_512 x[j] = _mm512_min_ps(_mm512_max_ps(s[j], _mm512_set1_ps(-87.0f)),
                                _mm512_set1_ps(88.0f));
    X4_512 n[j] = _mm512_roundscale_ps(_mm512_mul_ps(x[j], _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    X4_512 r[j] = _mm512_fnmadd_ps(n[j], _mm512_set1_ps(0.693359375f), x[j]);
    X4_512 r[j] = _mm512_fnmadd_ps(n[j], _mm512_set1_ps(-2.12194440e-4f), r[j]);
    X4_512 p[j] = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r[j],
                                  _mm512_set1_ps(1.3981999507e-3f));
    X4_512 p[j] = _mm512_fmadd_ps(p[j], r[j], _mm512_set1_ps(8.3334519073e-3f));
    X4_512 p[j] = _mm512_fmadd_ps(p[j], r[j], _mm512_set1_ps(4.1665795894e-2f));
    X4_512 p[j] = _mm512_fmadd_ps(p[j], r[j], _mm512_set1_ps(1.6666665459e-1f));
    X4_512 p[j] = _mm512_fmadd_ps(p[j], r[j], _mm512_set1_ps(5.0000001201e-1f));
    X4_512 p[j] = _mm512_fmadd_ps(_mm512_mul_ps(p[j], r[j]), r[j],
                                  _mm512_add_ps(r[j], _mm512_set1_ps(1.0f)));
    X4_512 p[j] = _mm512_scalef_ps(p[j], n[j]);
    X4_512 {
        __m512 erfc = _mm512_mul_ps(t[j], p[j]);
        erfc = _mm512_fmadd_ps(erfc, e[j], erfc);
        const __m512 tail = _mm512_mul_ps(erfc, half);
        const __mmask16 negative = _mm512_cmp_ps_mask(v[j], _mm512_setzero_ps(), _CMP_LT_OQ);
        v[j] = _mm512_mul_ps(v[j], _mm512_mask_blend_ps(negative, _mm512_sub_ps(one, tail),
                                                        tail));
    }
}

/* gelu512_for_bf16_n: gelu(x) = x Phi(x) for a GELU whose result is rounded to bf16 next (the
 * bf16 GEMMs' up projection epilogues): 1 - Phi(|x|) = erfc(z) / 2 = t exp(-z^2 + c(t) - ln 2),
 * z = |x| / sqrt 2, t = 1 / (1 + z / 2), with c a degree-7 fit (relative error < 6.5e-7,
 * refitted for this: Numerical Recipes' degree-9 c is good to 1.2e-7) and -z^2 + c rounded
 * once, not carried (that rounding grows with z^2: ~4e-6 relative only in the far tail,
 * |x| > 10). Cheaper than
 * x normal_cdf512(x) by folding: ln 2 (the / 2) into c's constant; 1 / sqrt 2 into d; exp512
 * without its clamps (|x| <= 14 keeps the argument in [-101, 0], which scalef takes, subnormals
 * included) and in plain Horner form; and x Phi(x) = max(x, 0) - |x| (1 - Phi(|x|)), no blend.
 * Measured against float64 over x in [-13, 13]: within gemm_bf16.GELU_BF16_RELATIVE_ERROR (1e-5),
 * far below the bf16 rounding that follows (half an ulp, 2^-9). A degree-5 fit (1.2e-5) moved
 * enough bf16 roundings to break the bf16 encoder's test against its float64 emulation
 * (tests/test_precision.py). Measured over every 7th float in [-13, 13]: 4.6e-6, as the
 * x normal_cdf512-form it replaces. NaN stays NaN, +inf inf; x < -14 gives -1.2e-43 (|x| clamped
 * at 14 times Phi(-14)), not 0.
 * v[j] = that for nv (<= 8, a constant) vectors at once, each step across them before the next
 * (the same operations on each vector, so the same bits as one at a time).
 * One vector's GELU is a chain of ~30 dependent operations (~100 cycles) and the scheduler holds
 * only ~3 vectors' chains, so one vector at a time ran at ~2/3 of the vector units' rate (an
 * L1-resident loop, Sapphire Rapids: 14-15 ns a vector, 8 at once 9.4-9.8 ns, 4 at once 11). */
#define XN_512 _Pragma("GCC unroll 8") for (int j = 0; j < nv; j++)
__attribute__((always_inline)) AVX512 static inline void gelu512_for_bf16_n(__m512 *v,
                                                                            const int nv) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 a[8], t[8], c[8], n[8], r[8];
    XN_512 {
        a[j] = _mm512_min_ps(_mm512_abs_ps(v[j]), _mm512_set1_ps(14.0f));
        const __m512 d = _mm512_fmadd_ps(a[j], _mm512_set1_ps(0.353553390593273762f), one);
        t[j] = _mm512_rcp14_ps(d);                                /* 14 bits, then Newton */
        t[j] = _mm512_fmadd_ps(t[j], _mm512_fnmadd_ps(d, t[j], one), t[j]);
    }
    XN_512 c[j] = _mm512_fmadd_ps(_mm512_set1_ps(-0.183474673f), t[j],
                                  _mm512_set1_ps(0.733157204f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-0.968576161f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.319380204f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-0.0233095408f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.388972578f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(0.999376627f));
    /* the constant: -1.26552688 - ln 2 */
    XN_512 c[j] = _mm512_fmadd_ps(c[j], t[j], _mm512_set1_ps(-1.95867406f));
    XN_512 { /* s = -a^2 / 2 + c (in c), then exp512(s) */
        c[j] = _mm512_fnmadd_ps(_mm512_mul_ps(a[j], _mm512_set1_ps(0.5f)), a[j], c[j]);
        n[j] = _mm512_roundscale_ps(_mm512_mul_ps(c[j], _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    XN_512 r[j] = _mm512_fnmadd_ps(n[j], _mm512_set1_ps(0.693359375f), c[j]);
    XN_512 r[j] = _mm512_fnmadd_ps(n[j], _mm512_set1_ps(-2.12194440e-4f), r[j]);
    XN_512 c[j] = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r[j],
                                  _mm512_set1_ps(1.3981999507e-3f)); /* p, in c */
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], _mm512_set1_ps(8.3334519073e-3f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], _mm512_set1_ps(4.1665795894e-2f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], _mm512_set1_ps(1.6666665459e-1f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], _mm512_set1_ps(5.0000001201e-1f));
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], one);
    XN_512 c[j] = _mm512_fmadd_ps(c[j], r[j], one);
    XN_512 { /* 1 - Phi(|x|) = t exp(s); x Phi(x) = max(x, 0) - |x| (1 - Phi(|x|)) */
        const __m512 tail = _mm512_mul_ps(t[j], _mm512_scalef_ps(c[j], n[j]));
        v[j] = _mm512_fnmadd_ps(a[j], tail, _mm512_max_ps(_mm512_setzero_ps(), v[j]));
    }
}

/* gelu(x) = x Phi(x) for a GELU whose result is quantised to int8 next (the int8 up projection's
 * epilogue, and the separate bias + GELU before an int8 GEMM: their rows are rounded to a step
 * of max|row| / 127, so ~1e-6 relative is wasted precision): max(x, 0) - h(|x|),
 * h(a) = a (1 - Phi(a)), read from 16 cubics over [0, 6) (benchmarks/gelu_int8_fit.py; h(6) is
 * 6e-9, |x| >= 6 takes the last cubic's value at 6): the interval's four coefficients by
 * vpermps (its index the lanes' integer part of |x| 16 / 6), u its fraction (vreduceps),
 * three FMAs. ~14 operations against gelu512x4's ~37 a vector; |ours - gelu(x)| <=
 * kernels.GELU_INT8_ERROR + 2^-23 |gelu(x)| (the fit's 9.4e-6, then float32's rounding of the
 * result), measured against float64 in tests/nn/test_gelu_int8.py. NaN stays NaN (max returns
 * its second operand), +inf inf, -inf -6e-9. */
static const float GELU_INT8_TABLE[4][16] __attribute__((aligned(64))) = {
    {-9.40680366e-06f, 0.132682189f, 0.169972777f, 0.146586806f, 0.100215621f, 0.0569955446f,
     0.0275053978f, 0.011372136f, 0.00404912001f, 0.00124529516f, 0.000331413234f,
     7.64114593e-05f, 1.52746743e-05f, 2.64872642e-06f, 3.98577271e-07f, 5.20608729e-08f},
    {0.187805131f, 0.0805368647f, 0.000227408542f, -0.0406978391f, -0.0479580425f,
     -0.0370463431f, -0.0222089738f, -0.0108840605f, -0.00446100719f, -0.00154754694f,
     -0.000457595568f, -0.000115850518f, -2.51891852e-05f, -4.71376825e-06f, -7.60415958e-07f,
     -1.05873646e-07f},
    {-0.0576502196f, -0.0493903756f, -0.0301772896f, -0.0100913085f, 0.00307924184f,
     0.00775291212f, 0.00691338954f, 0.00429653469f, 0.00208685384f, 0.000826197851f,
     0.000272149569f, 7.54641733e-05f, 1.77452548e-05f, 3.55626071e-06f, 6.09555684e-07f,
     8.95944368e-08f},
    {0.00253142836f, 0.00613769004f, 0.00656070001f, 0.00441861944f, 0.00166117784f,
     -0.000194683365f, -0.000836802763f, -0.000735456531f, -0.000429900916f, -0.000192725827f,
     -6.96547722e-05f, -2.07881531e-05f, -5.19338755e-06f, -1.09543703e-06f, -1.96225812e-07f,
     -2.9975336e-08f},
};

AVX512 static inline __m512 gelu512_for_int8(__m512 x) {
    /* |x| 16 / 6, below 16 (min returns its second operand for NaN) */
    const __m512 s = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(16.0f / 6.0f)),
                                   _mm512_set1_ps(15.9999990f));
    const __m512i i = _mm512_cvttps_epi32(s);
    const __m512 u = _mm512_reduce_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); /* s - trunc(s): the fraction */
    __m512 h = _mm512_permutexvar_ps(i, _mm512_load_ps(GELU_INT8_TABLE[3]));
    h = _mm512_fmadd_ps(h, u, _mm512_permutexvar_ps(i, _mm512_load_ps(GELU_INT8_TABLE[2])));
    h = _mm512_fmadd_ps(h, u, _mm512_permutexvar_ps(i, _mm512_load_ps(GELU_INT8_TABLE[1])));
    h = _mm512_fmadd_ps(h, u, _mm512_permutexvar_ps(i, _mm512_load_ps(GELU_INT8_TABLE[0])));
    return _mm512_sub_ps(_mm512_max_ps(_mm512_setzero_ps(), x), h);
}

/* 16 bf16 values (bits) -> float32: bf16 is the top half of a float32. */
AVX512 static inline __m512 load_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* float32 -> bf16 rounded to nearest even (vcvtneps2bf16), 16 values. */
AVX512BF16 static inline void store_bf16(uint16_t *p, __m512 v) {
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

/* attention512.c: attention.c's kernel with 16 lanes; hd % 16 == 0, a bf16 output (out16)
 * needs ISA_AVX512BF16. */
int seqenc_varlen_attention512(const Problem *pr, const int64_t *starts, const int64_t *lengths,
                               int64_t n_seq, int64_t n_rows, int threads);
/* avx512.c: n % 16 == 0; dtype DTYPE_BF16 needs ISA_AVX512BF16; for_int8 (float32 rows):
 * bias + gelu512_for_int8. For float32 rows, copy16
 * (LayerNorm: a bf16 copy of the result; NULL for none) needs ISA_AVX512BF16 too. */
void seqenc_bias_gelu512(void *x, const void *bias, int64_t rows, int64_t n, int threads,
                         int dtype, int for_int8);
int seqenc_add_layernorm512(void *y, const void *bias, const void *residual, const void *gamma,
                            const void *beta, float eps, int64_t rows, int64_t n, int threads,
                            int dtype, uint16_t *copy16);
/* avx512.c, int8: per-row quantisation of float32 rows (each column times mul[c] first, mul
 * NULL for none), and the int32 products back to float32 in place (n % 16 == 0). */
void seqenc_quantize_rows512(const float *x, const float *mul, int8_t *q, float *scale,
                             int64_t rows, int64_t n, int threads);
void seqenc_dequantize_rows512(int32_t *acc, const float *row_scale, const float *col_scale,
                               int64_t rows, int64_t n, int threads);
/* gemm_bf16.c: C (N, M) float32 = A (N, K) bf16 times W^T, W packed as gemm_bf16.c says
 * (K even, M % 16 == 0), or with gelu_bias (M,) C (N, M) bf16 = gelu(A W^T + gelu_bias); and
 * float32 rows -> bf16 rows (K % 16 == 0). Need ISA_AVX512BF16. */
void seqenc_gemm_bf16(const uint16_t *a, const uint16_t *packed, float *c, int64_t n,
                      int64_t m, int64_t k, int64_t ldc, int threads, const float *gelu_bias,
                      const F32Epilogue *norm);
void seqenc_to_bf16(const float *x, uint16_t *y, int64_t n, int64_t k, int threads);
/* gemm_bf16_amx.c: seqenc_gemm_bf16 on AMX tiles, the same packed W, K % 32 == 0; -1 (nothing
 * done) where seqenc_amx_usable() is not: the CPU has AMX-TILE + AMX-BF16 and Linux granted
 * this process the tile data (ISA_AMX). */
int seqenc_amx_usable(void);
/* peak.c's AMX probe: TDPBF16PS on tiles in registers, operations done (0 without AMX). */
double seqenc_amx_bf16_ops(int64_t iters);
int seqenc_gemm_bf16_amx(const uint16_t *a, const uint16_t *packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads, const float *gelu_bias,
                         const F32Epilogue *norm);
/* one thread's float32 rows [lo, hi) of seqenc_add_layernorm512 (the fused GEMMs' epilogue);
 * copy16: also the result in bf16 (NULL: none; needs ISA_AVX512BF16) */
void seqenc_add_layernorm_rows512(float *y, const float *bias, const float *residual,
                                  const float *gamma, const float *beta, float eps, int64_t n,
                                  int64_t lo, int64_t hi, uint16_t *copy16);
/* gemm_f32.c: C (N, M) float32 = A (N, K) float32 times W^T, W (M, K) float32 rows
 * (M % 16 == 0), then (epi, NULL: none) simd.h's F32Epilogue with avx512.c's arithmetic; -1
 * without memory for its buffers. Needs ISA_AVX512. */
int seqenc_gemm_f32(const float *a, const float *w, int w_packed, float *c, int64_t n,
                    int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi);
/* W (M, K) into the panels gemm_f32 reads with w_packed (M K floats, 64-byte aligned) */
void seqenc_pack_f32(const float *w, float *packed, int64_t m, int64_t k);
/* peak.c: giga-operations per second of `threads` threads running probe `kind`. */
double seqenc_peak_gops(int kind, int64_t iters, int threads);
#endif
#endif
