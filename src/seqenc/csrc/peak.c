/* The cores' arithmetic peak per instruction set, measured: independent chains of the widest
 * multiply-add the CPU has (enough of them to cover latency x pipes), on `threads` OpenMP
 * threads. What every GEMM here is measured against (benchmarks/RESULTS.md, `seqenc bench`). */
#include "simd512.h"
#include "int8.h"

#ifdef SEQENC_X86
#include <omp.h>
#include <time.h>

#define CHAINS 12

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each returns the operations done (a multiply-add counts 2) and a value that depends on all
 * of them, so the compiler keeps the chains. */
AVX2 static double fma256(int64_t iters, float *sink) {
    __m256 acc[CHAINS];
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm256_add_ps(acc[0], acc[i]);
    *sink = horizontal_sum(acc[0]);
    return 2.0 * 8 * CHAINS * (double)iters;
}

AVX512 static double fma512(int64_t iters, float *sink) {
    __m512 acc[CHAINS];
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return 2.0 * 16 * CHAINS * (double)iters;
}

/* vdpbf16ps: 16 lanes x 2 bf16 products, each added: 64 operations. */
AVX512BF16 static double bf16dot512(int64_t iters, float *sink) {
    __m512 acc[CHAINS];
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, a);
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return 4.0 * 16 * CHAINS * (double)iters;
}

/* vpdpbusd: 16 lanes x 4 u8*s8 products, each added: 128 operations. */
AVX512VNNI static double vnni512(int64_t iters, float *sink) {
    __m512i acc[CHAINS];
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
    *sink = (float)_mm512_reduce_add_epi32(acc[0]);
    return 8.0 * 16 * CHAINS * (double)iters;
}

double seqenc_peak_gops(int kind, int64_t iters, int threads) {
    double ops = 0.0;
    const double start = now();
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    {
        float sink = 0.0f;
        switch (kind) {
            case PEAK_FMA256: ops += fma256(iters, &sink); break;
            case PEAK_FMA512: ops += fma512(iters, &sink); break;
            case PEAK_BF16DOT512: ops += bf16dot512(iters, &sink); break;
            case PEAK_VNNI512: ops += vnni512(iters, &sink); break;
            case PEAK_AMXBF16: ops += seqenc_amx_bf16_ops(iters); break; /* gemm_bf16_amx.c */
            case PEAK_AMX_INT8: ops += seqenc_int8_amx_peak(iters, &sink); break;
            default: break;
        }
        if (sink == 12345.678f) ops += 1.0;  /* keeps sink live */
    }
    return ops / (now() - start) / 1e9;
}
#endif
