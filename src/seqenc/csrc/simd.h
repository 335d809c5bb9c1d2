/* What the kernels share: AVX2 helpers, the attention problem, and the entry points
 * module.c calls. Everything here exists only on x86-64 with GCC or Clang (SEQENC_X86). */
#ifndef SEQENC_SIMD_H
#define SEQENC_SIMD_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#define SEQENC_X86 1
#define AVX2 __attribute__((target("avx2,fma")))

/* exp(x) for x in [-87, 88]: x = n ln2 + r with n = round(x / ln2) and r in [-ln2/2, ln2/2]
 * (ln2 split in two parts, Cody & Waite, so r is exact to ~1e-10), exp(r) by Cephes' degree-5
 * minimax polynomial, 2^n in the exponent bits. Relative error <= 2e-7 over the whole range
 * (checked against float64 in tests/nn/test_kernels.py). Below -87 the result is clamped to
 * exp(-87) ~ 1.6e-38 (absolute error < 2e-38), so 2^n never leaves the normal range. */
AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt 2) / 2, the factor GELU multiplies x by.
 *
 * erfc(z), z >= 0, by the Chebyshev fit of Numerical Recipes' erfcc: t exp(-z^2 + c(t)) with
 * t = 1 / (1 + z/2) and c a degree-9 polynomial, relative error < 1.2e-7 for every z >= 0. A
 * *relative* bound is what GELU's left tail needs: gelu(-4) = -1.3e-4, and an erf with an
 * absolute error of 3e-7 (Abramowitz & Stegun 7.1.26/28, PyTorch's vectorised erf) is 0.3% off
 * there. z^2 = x^2 / 2 is formed exactly (the FMA gives the rounding residual of x*x) and the
 * residual of -z^2 + c is carried into exp as a first-order correction, so rounding -z^2 ~ -80
 * in float32 does not cost ~1e-5 relative at the far end. Measured against float64 over
 * x in [-13, 13]: |Phi - Phi64| <= 8e-7 Phi64 (kernels.GELU_RELATIVE_ERROR states the bound
 * the tests hold it to). |x| is clamped at 14, where Phi is 1 or below 1e-44. */
AVX2 static inline __m256 normal_cdf256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 a = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x),
                                   _mm256_set1_ps(14.0f));                        /* |x| */
    const __m256 z = _mm256_mul_ps(a, _mm256_set1_ps(0.70710678118654752f));
    const __m256 d = _mm256_fmadd_ps(z, half, one);
    __m256 t = _mm256_rcp_ps(d);                                  /* 1 / d to 12 bits, then */
    t = _mm256_fmadd_ps(t, _mm256_fnmadd_ps(d, t, one), t);       /* Newton: ~1e-7 relative */
    __m256 c = _mm256_set1_ps(0.17087277f);
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-0.82215223f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(1.48851587f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-1.13520398f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.27886807f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-0.18628806f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.09678418f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.37409196f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(1.00002368f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-1.26551223f));
    /* -z^2 + c = s + e exactly (up to e's own rounding): x*x = hi + lo, then TwoSum(-hi/2, c) */
    const __m256 hi = _mm256_mul_ps(a, a), lo = _mm256_fmsub_ps(a, a, hi);
    const __m256 h = _mm256_mul_ps(hi, _mm256_set1_ps(-0.5f));
    const __m256 s = _mm256_add_ps(h, c);
    const __m256 bb = _mm256_sub_ps(s, h);
    __m256 e = _mm256_add_ps(_mm256_sub_ps(h, _mm256_sub_ps(s, bb)), _mm256_sub_ps(c, bb));
    e = _mm256_fnmadd_ps(lo, half, e);
    __m256 erfc = _mm256_mul_ps(t, exp256(s));  /* erfc(|x| / sqrt 2) */
    erfc = _mm256_fmadd_ps(erfc, e, erfc);      /* * exp(e) ~ * (1 + e), |e| < 1e-5 */
    const __m256 tail = _mm256_mul_ps(erfc, half);
    return _mm256_blendv_ps(_mm256_sub_ps(one, tail), tail, x);  /* x < 0: the tail itself */
}

/* v Phi(v) for four vectors at once: normal_cdf256's and exp256's arithmetic step by step
 * across the four (the same bits as v * normal_cdf256(v) for each), so that the CPU has four
 * independent chains to overlap: one GELU is a chain of ~40 dependent operations, and a lone
 * chain runs at a third of the FP pipes' rate (measured on Zen 3, the AVX2 GEMM's epilogue). */
#define X4 _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
AVX2 static inline void gelu256x4(__m256 v[4]) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    __m256 a[4], d[4], t[4], c[4], hi[4], lo[4], h[4], s[4], bb[4], e[4], x[4], n[4], r[4], p[4];
    X4 a[j] = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[j]),
                            _mm256_set1_ps(14.0f));
    X4 d[j] = _mm256_fmadd_ps(_mm256_mul_ps(a[j], _mm256_set1_ps(0.70710678118654752f)), half,
                              one);
    X4 t[j] = _mm256_rcp_ps(d[j]);
    X4 t[j] = _mm256_fmadd_ps(t[j], _mm256_fnmadd_ps(d[j], t[j], one), t[j]);
    X4 c[j] = _mm256_fmadd_ps(_mm256_set1_ps(0.17087277f), t[j], _mm256_set1_ps(-0.82215223f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(1.48851587f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(-1.13520398f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(0.27886807f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(-0.18628806f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(0.09678418f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(0.37409196f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(1.00002368f));
    X4 c[j] = _mm256_fmadd_ps(c[j], t[j], _mm256_set1_ps(-1.26551223f));
    X4 {
        hi[j] = _mm256_mul_ps(a[j], a[j]);
        lo[j] = _mm256_fmsub_ps(a[j], a[j], hi[j]);
        h[j] = _mm256_mul_ps(hi[j], _mm256_set1_ps(-0.5f));
        s[j] = _mm256_add_ps(h[j], c[j]);
        bb[j] = _mm256_sub_ps(s[j], h[j]);
        e[j] = _mm256_add_ps(_mm256_sub_ps(h[j], _mm256_sub_ps(s[j], bb[j])),
                             _mm256_sub_ps(c[j], bb[j]));
        e[j] = _mm256_fnmadd_ps(lo[j], half, e[j]);
    }
    /* exp256(s) */
    X4 x[j] = _mm256_min_ps(_mm256_max_ps(s[j], _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    X4 n[j] = _mm256_round_ps(_mm256_mul_ps(x[j], _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    X4 r[j] = _mm256_fnmadd_ps(n[j], _mm256_set1_ps(0.693359375f), x[j]);
    X4 r[j] = _mm256_fnmadd_ps(n[j], _mm256_set1_ps(-2.12194440e-4f), r[j]);
    X4 p[j] = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r[j],
                              _mm256_set1_ps(1.3981999507e-3f));
    X4 p[j] = _mm256_fmadd_ps(p[j], r[j], _mm256_set1_ps(8.3334519073e-3f));
    X4 p[j] = _mm256_fmadd_ps(p[j], r[j], _mm256_set1_ps(4.1665795894e-2f));
    X4 p[j] = _mm256_fmadd_ps(p[j], r[j], _mm256_set1_ps(1.6666665459e-1f));
    X4 p[j] = _mm256_fmadd_ps(p[j], r[j], _mm256_set1_ps(5.0000001201e-1f));
    X4 p[j] = _mm256_fmadd_ps(_mm256_mul_ps(p[j], r[j]), r[j],
                              _mm256_add_ps(r[j], _mm256_set1_ps(1.0f)));
    X4 p[j] = _mm256_mul_ps(p[j], _mm256_castsi256_ps(_mm256_slli_epi32(
                  _mm256_add_epi32(_mm256_cvtps_epi32(n[j]), _mm256_set1_epi32(127)), 23)));
    X4 {
        __m256 erfc = _mm256_mul_ps(t[j], p[j]);
        erfc = _mm256_fmadd_ps(erfc, e[j], erfc);
        const __m256 tail = _mm256_mul_ps(erfc, half);
        v[j] = _mm256_mul_ps(v[j], _mm256_blendv_ps(_mm256_sub_ps(one, tail), tail, v[j]));
    }
}
#undef X4

AVX2 static inline float horizontal_max(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

AVX2 static inline float horizontal_sum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* r[0..7] rows of an 8x8 block -> its columns. */
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

typedef struct {
    const float *qkv;     /* (N, 3D): q | k | v without their biases, heads of hd inside each */
    const float *q_bias;  /* (D,): added to the queries */
    const float *v_bias;  /* (D,): added to the output (softmax rows sum to 1), see attention() */
    float *out;           /* (N, D) */
    int64_t n_heads, hd, D;
    float scale;
    const uint16_t *qkv16;  /* bfloat16 instead of qkv when not NULL (read as float32) */
    uint16_t *out16;        /* bfloat16 instead of out when not NULL (rounded to nearest even) */
} Problem;

/* 8 bfloat16 -> 8 float32 (exact: bf16 is float32's upper half). */
AVX2 static inline __m256 load_bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* 8 float32 -> 8 bfloat16, rounded to nearest even (NaN stays a quiet NaN), as PyTorch rounds. */
AVX2 static inline void store_bf16x8(uint16_t *p, __m256 v) {
    __m256i bits = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), nan);
    _mm_storeu_si128((__m128i *)p, _mm_packus_epi32(_mm256_castsi256_si128(rounded),
                                                     _mm256_extracti128_si256(rounded, 1)));
}

/* attention.c */
int seqenc_varlen_attention(const Problem *pr, const int64_t *starts, const int64_t *lengths,
                     int64_t n_seq, int64_t n_rows, int threads);
/* elementwise.c */
void seqenc_bias_gelu(float *x, const float *bias, int64_t rows, int64_t n, int threads);
void seqenc_add_layernorm(float *y, const float *bias, const float *residual, const float *gamma,
                   const float *beta, float eps, int64_t rows, int64_t n, int threads);
/* gemm_f32_avx2.c: C = A W^T, then (epi, NULL: none) gelu(C + gelu_bias) on each register
 * tile, or with gamma LayerNorm(C + bias + residual) * gamma + beta on each task's rows
 * (ldc == m, residual (n, m)): elementwise.c's arithmetic. -1: no memory. */
typedef struct {
    const float *gelu_bias;
    const float *bias, *residual, *gamma, *beta;
    float eps;
    uint16_t *copy16; /* the bf16 GEMMs' LayerNorm: also the result rounded to bf16 (or NULL) */
} F32Epilogue;
int seqenc_gemm_f32_avx2(const float *a, const float *w, int w_packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi);
void seqenc_pack_f32_avx2(const float *w, float *packed, int64_t m, int64_t k);
/* one thread's rows [lo, hi) of seqenc_add_layernorm (the fused GEMMs' epilogue) */
AVX2 void seqenc_add_layernorm_rows(float *y, const float *bias, const float *residual,
                                    const float *gamma, const float *beta, float eps, int64_t n,
                                    int64_t lo, int64_t hi);
#endif
#endif
