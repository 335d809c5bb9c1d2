/* int8 GEMMs with exact int32 sums, and the per-row quantisation that feeds them.
 *
 * Why our own: PyTorch's torch._int_mm (oneDNN) multiplies with vpmaddubsw on CPUs without
 * VNNI, whose int16 pair sums saturate (int8 was refused there), and it splits each GEMM
 * statically between the threads, so a thread on a busy core holds the other one up. These
 * kernels are exact on every x86-64 CPU with AVX2 and hand out small tiles dynamically.
 *
 *   out (N, M) = dequant(A W^T): out[r, c] = (float)sum_k a[r, k] w[c, k] * row_scale[r]
 *   * col_scale[c] (in that order, float32: what dequantize_rows in avx512.c computes), or the
 *   int32 sums themselves when row_scale is NULL (tests compare them with int64 sums).
 *   a: the activations quantised by seqenc_quantize_int8 (|q| <= 127 per row); w: int8 weights
 *   (|w| <= 127), packed once (seqenc/int8.py) in panels of up to PANEL columns (every panel's
 *   width a multiple of 16), panel p holding columns c0 .. c0 + width:
 *
 *   INT8_I16 (AVX2): a and w as int16. packed[c0 K + k2 2 width + 2 j + t] = w[c0 + j, 2 k2 + t]:
 *     vpmaddwd multiplies 8 columns by a broadcast pair of k and adds each pair (two products
 *     of at most 127^2: exact in int32, no saturation), vpaddd accumulates.
 *   INT8_VNNI512 (AVX512-VNNI, 16 columns) and INT8_VNNI256 (AVX-VNNI, 8): a as uint8 q + 128,
 *     w int8 in quads, packed[c0 K + k4 4 width + 4 j + t] = w[c0 + j, 4 k4 + t]: vpdpbusd adds
 *     four u8 x s8 products to each int32 lane (the non-saturating form). The shift adds
 *     128 sum_k w[c, k] to every sum; corr[c] holds that and is subtracted.
 * Every partial sum is bounded by K 255 127 < 2^31 for K <= 65536 (module.c checks K), so the
 * int32 sums are exact: int8 quality depends on the quantisation alone, on every CPU.
 *
 * Work: tiles of up to TILE_ROWS rows x one panel (or, in seqenc_quant_gemm_int8, a block of
 * rows x every panel), taken one at a time from OpenMP's dynamic schedule or tasks.c's
 * counter: a thread that loses its core for a while takes fewer tiles instead of owning half
 * of the GEMM (oneDNN's split is static). Panel-major order, so a thread's next tile mostly
 * reuses the panel in its cache.
 */
#include "int8.h"
#include "tasks.h"

#ifdef SEQENC_X86
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define PANEL 48
#define TILE_ROWS 64
#define MR512 8 /* rows x 3 vectors of 16 columns: 24 accumulators of 32 zmm registers */
#define MR256 4 /* rows x 3 vectors of 8 columns: 12 accumulators of 16 ymm registers */

#define AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

static inline int32_t load4(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The tile's destination and epilogue: dequantise into out, or store the raw sums. */
typedef struct {
    const int32_t *corr;      /* (M,) subtracted from the sums, or NULL */
    const float *row_scale;   /* (N,), or NULL: int32 out */
    const float *col_scale;   /* (M,) */
    void *out;
    int64_t ldc;
    const float *gelu_bias;   /* (M,): gelu(sum + bias) stored (VNNI512, I16), or NULL */
} Epilogue;

VNNI512 static inline void store16(const Epilogue *e, int64_t r, int64_t c, __m512i acc) {
    if (e->corr) acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(e->corr + c));
    if (!e->row_scale) {
        _mm512_storeu_si512((int32_t *)e->out + r * e->ldc + c, acc);
        return;
    }
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(e->row_scale[r]));
    __m512 y = _mm512_mul_ps(v, _mm512_loadu_ps(e->col_scale + c));
    if (e->gelu_bias) { /* bias_gelu_'s arithmetic (avx512.c), on the tile in registers */
        y = _mm512_add_ps(y, _mm512_loadu_ps(e->gelu_bias + c));
        y = _mm512_mul_ps(y, normal_cdf512(y));
    }
    _mm512_storeu_ps((float *)e->out + r * e->ldc + c, y);
}

AVX2 static inline void store8(const Epilogue *e, int64_t r, int64_t c, __m256i acc) {
    if (e->corr) acc = _mm256_sub_epi32(acc, _mm256_loadu_si256((const __m256i *)(e->corr + c)));
    if (!e->row_scale) {
        _mm256_storeu_si256((__m256i *)((int32_t *)e->out + r * e->ldc + c), acc);
        return;
    }
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(e->row_scale[r]));
    __m256 y = _mm256_mul_ps(v, _mm256_loadu_ps(e->col_scale + c));
    if (e->gelu_bias) { /* bias_gelu_'s arithmetic (elementwise.c), on the tile in registers */
        y = _mm256_add_ps(y, _mm256_loadu_ps(e->gelu_bias + c));
        y = _mm256_mul_ps(y, normal_cdf256(y));
    }
    _mm256_storeu_ps((float *)e->out + r * e->ldc + c, y);
}

/* rows x nv vectors over all of K, always inlined with constant rows and nv so that the
 * accumulators stay in registers. b points at the first column's k-group 0 in the panel,
 * stride the bytes from one k-group to the next (width 4). */
__attribute__((always_inline)) VNNI512 static inline void micro_vnni512(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m512i acc[MR512][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_si512();
    for (int64_t g = 0; g < groups; g++) {
        __m512i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) w[v] = _mm512_loadu_si512(b + g * stride + 64 * v);
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m512i x = _mm512_set1_epi32(load4(a + r * lda + 4 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], x, w[v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store16(e, r0 + r, c0 + 16 * v, acc[r][v]);
}

__attribute__((always_inline)) AVXVNNI static inline void micro_vnni256(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m256i acc[MR256][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        __m256i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            w[v] = _mm256_loadu_si256((const __m256i *)(b + g * stride + 32 * v));
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i x = _mm256_set1_epi32(load4(a + r * lda + 4 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = _mm256_dpbusd_avx_epi32(acc[r][v], x, w[v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store8(e, r0 + r, c0 + 8 * v, acc[r][v]);
}

__attribute__((always_inline)) AVX2 static inline void micro_i16(
    const int16_t *a, int64_t lda, const int16_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m256i acc[MR256][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        __m256i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            w[v] = _mm256_loadu_si256((const __m256i *)(b + g * stride + 16 * v));
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i x = _mm256_set1_epi32(load4(a + r * lda + 2 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(x, w[v]));
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store8(e, r0 + r, c0 + 8 * v, acc[r][v]);
}

/* The dispatch from run-time (rows, nv) to the inlined constant-shape micro kernels. */
#define CASE_NV(MICRO, ROWS)                                                                 \
    switch (nv) {                                                                            \
        case 1: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 1); break;                 \
        case 2: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 2); break;                 \
        default: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 3); break;                \
    }

VNNI512 static void any_vnni512(const uint8_t *a, int64_t lda, const int8_t *b,
                                   int64_t stride, int64_t groups, const Epilogue *e,
                                   int64_t r0, int64_t c0, int rows, int nv) {
    switch (rows) {
        case 8: CASE_NV(micro_vnni512, 8) break;
        case 7: CASE_NV(micro_vnni512, 7) break;
        case 6: CASE_NV(micro_vnni512, 6) break;
        case 5: CASE_NV(micro_vnni512, 5) break;
        case 4: CASE_NV(micro_vnni512, 4) break;
        case 3: CASE_NV(micro_vnni512, 3) break;
        case 2: CASE_NV(micro_vnni512, 2) break;
        default: CASE_NV(micro_vnni512, 1) break;
    }
}

AVXVNNI static void any_vnni256(const uint8_t *a, int64_t lda, const int8_t *b,
                                int64_t stride, int64_t groups, const Epilogue *e, int64_t r0,
                                int64_t c0, int rows, int nv) {
    switch (rows) {
        case 4: CASE_NV(micro_vnni256, 4) break;
        case 3: CASE_NV(micro_vnni256, 3) break;
        case 2: CASE_NV(micro_vnni256, 2) break;
        default: CASE_NV(micro_vnni256, 1) break;
    }
}

AVX2 static void any_i16(const int16_t *a, int64_t lda, const int16_t *b, int64_t stride,
                         int64_t groups, const Epilogue *e, int64_t r0, int64_t c0, int rows,
                         int nv) {
    switch (rows) {
        case 4: CASE_NV(micro_i16, 4) break;
        case 3: CASE_NV(micro_i16, 3) break;
        case 2: CASE_NV(micro_i16, 2) break;
        default: CASE_NV(micro_i16, 1) break;
    }
}

/* One tile: rows lo .. hi of A against the panel at column c0 of the given width. */
static void tile(int kind, const void *a, const void *packed, const Epilogue *e, int64_t k,
                 int64_t lo, int64_t hi, int64_t c0, int64_t width) {
    if (kind == INT8_VNNI512) {
        const int8_t *b = (const int8_t *)packed + c0 * k;
        for (int64_t r = lo; r < hi; r += MR512)
            any_vnni512((const uint8_t *)a + r * k, k, b, 4 * width, k / 4, e, r, c0,
                        (int)(hi - r < MR512 ? hi - r : MR512), (int)(width / 16));
        return;
    }
    /* 8-lane kernels: the panel in slices of up to 24 columns (3 vectors), each slice over
     * the tile's rows while it is in L1 */
    for (int64_t s = 0; s < width; s += 24) {
        const int nv = (int)((width - s < 24 ? width - s : 24) / 8);
        for (int64_t r = lo; r < hi; r += MR256) {
            const int rows = (int)(hi - r < MR256 ? hi - r : MR256);
            if (kind == INT8_VNNI256)
                any_vnni256((const uint8_t *)a + r * k, k,
                            (const int8_t *)packed + c0 * k + 4 * s, 4 * width, k / 4, e, r,
                            c0 + s, rows, nv);
            else
                any_i16((const int16_t *)a + r * k, k, (const int16_t *)packed + c0 * k + 2 * s,
                        2 * width, k / 2, e, r, c0 + s, rows, nv);
        }
    }
}

typedef struct {
    int kind;
    const void *a, *packed;
    Epilogue e;
    int64_t n, m, k, row_tiles;
} Gemm;

static void gemm_task(void *ctx, int64_t t) {
    const Gemm *g = ctx;
    const int64_t p = t / g->row_tiles, lo = (t % g->row_tiles) * TILE_ROWS;
    const int64_t c0 = p * PANEL, width = g->m - c0 < PANEL ? g->m - c0 : PANEL;
    tile(g->kind, g->a, g->packed, &g->e, g->k, lo, lo + TILE_ROWS < g->n ? lo + TILE_ROWS : g->n,
         c0, width);
}

void seqenc_gemm_int8(int kind, const void *a, const void *packed, const int32_t *corr,
                      const float *row_scale, const float *col_scale, void *out, int64_t n,
                      int64_t m, int64_t k, int64_t ldc, int threads, int openmp) {
    const Gemm g = {kind, a, packed, {corr, row_scale, col_scale, out, ldc, NULL}, n, m, k,
                    (n + TILE_ROWS - 1) / TILE_ROWS};
    const int64_t tiles = (m + PANEL - 1) / PANEL * g.row_tiles;
    if (!openmp) {
        seqenc_run_tasks(gemm_task, (void *)&g, tiles, threads);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t t = 0; t < tiles; t++) gemm_task((void *)&g, t);
}

/* float32 rows -> quantised rows, one scale per row: scale[r] = max_c |x[r, c] mul[c]| / 127
 * (1 for an all-zero row) and q = x mul / scale rounded to nearest even, clamped to +-127:
 * the arithmetic of quantize_rows in avx512.c (x mul rounded once, times the reciprocal of
 * the scale), so both give the same q. mul NULL: no smoothing. Stored as int8, as uint8 q + 128
 * (the VNNI kernels' activations) or int16 (INT8_I16's). n % 8 == 0. */
AVX2 static inline __m256 scaled8(const float *row, const float *mul, int64_t c) {
    const __m256 v = _mm256_loadu_ps(row + c);
    return mul ? _mm256_mul_ps(v, _mm256_loadu_ps(mul + c)) : v;
}

AVX2 static void quantize_rows8(const float *x, const float *mul, void *q, float *scale,
                                int64_t n, int64_t lo, int64_t hi, int format) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t r = lo; r < hi; r++) {
        const float *row = x + r * n;
        __m256 top = _mm256_setzero_ps();
        for (int64_t c = 0; c < n; c += 8)
            top = _mm256_max_ps(top, _mm256_and_ps(scaled8(row, mul, c), abs_mask));
        const float m = horizontal_max(top);
        const float s = m > 1e-30f ? m / 127.0f : 1.0f;
        scale[r] = s;
        const __m256 inv = _mm256_set1_ps(1.0f / s);
        for (int64_t c = 0; c < n; c += 8) {
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(scaled8(row, mul, c), inv));
            v = _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)),
                                 _mm256_set1_epi32(-127));
            const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v),
                                                _mm256_extracti128_si256(v, 1));
            if (format == QUANT_I16) {
                _mm_storeu_si128((__m128i *)((int16_t *)q + r * n + c), w16);
                continue;
            }
            __m128i b8 = _mm_packs_epi16(w16, w16); /* low 8 bytes */
            if (format == QUANT_U8) b8 = _mm_xor_si128(b8, _mm_set1_epi8((char)0x80));
            _mm_storel_epi64((__m128i *)((int8_t *)q + r * n + c), b8);
        }
    }
}

typedef struct {
    const float *x, *mul;
    void *q;
    float *scale;
    int64_t rows, n;
    int format;
} Quantize;

static void quantize_task(void *ctx, int64_t b) {
    const Quantize *j = ctx;
    quantize_rows8(j->x, j->mul, j->q, j->scale, j->n, b * 16,
                   b * 16 + 16 < j->rows ? b * 16 + 16 : j->rows, j->format);
}

void seqenc_quantize_int8(const float *x, const float *mul, void *q, float *scale,
                          int64_t rows, int64_t n, int threads, int format, int openmp) {
    const Quantize j = {x, mul, q, scale, rows, n, format};
    const int64_t blocks = (rows + 15) / 16;
    if (!openmp) {
        seqenc_run_tasks(quantize_task, (void *)&j, blocks, threads);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) quantize_task((void *)&j, b);
}

/* The layer's GEMM in one pass over x: each task quantises a block of rows into a buffer of
 * its thread (in L1/L2) and multiplies it by every panel, so there is no quantised copy of x in
 * memory and no second parallel loop (on a shared CPU each loop can wait for a descheduled
 * thread). The same q, sums and epilogue as seqenc_quantize_int8 + seqenc_gemm_int8. */
typedef struct {
    int kind, format;
    const float *x, *mul;
    const void *packed;
    const int32_t *corr;
    const float *col_scale;
    float *out;
    int64_t n, m, k, ldc, rows; /* rows: per task, <= TILE_ROWS */
    const Int8Epilogue *epi;
    const void *q_in;           /* with x NULL: rows quantised already (QUANT_U8), and */
    const float *scale_in;      /* their scales */
    _Atomic int failed;         /* a task found no memory for its buffer */
} QuantGemm;

/* A scratch buffer per thread, grown as needed and freed when the thread exits (encode's batch
 * threads come and go with each call: a __thread pointer would leak their buffers). */
typedef struct {
    void *data;
    size_t capacity;
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Atomic long live_scratch; /* threads holding one (seqenc_int8_scratch_buffers) */

static void free_scratch(void *p) {
    free(((Scratch *)p)->data);
    free(p);
    live_scratch--;
}

long seqenc_int8_scratch_buffers(void) { return live_scratch; }

static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

static void *thread_buffer(size_t bytes) {
    pthread_once(&scratch_once, make_scratch_key);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
        live_scratch++;
    }
    if (bytes > s->capacity) {
        free(s->data);
        s->capacity = (bytes + 4095) / 4096 * 4096;
        s->data = aligned_alloc(64, s->capacity);
        if (!s->data) s->capacity = 0;
    }
    return s->data;
}

/* y = LayerNorm(y + bias + residual) * gamma + beta on rows lo .. hi of the task's output, while
 * they are in its cache: add_layernorm_rows_f32's arithmetic (avx512.c), the same order of
 * every float32 operation, so the result is the separate pass's. row: n floats of scratch. */
VNNI512 static void add_layernorm_rows(float *y, int64_t ldc, const Int8Epilogue *p, int64_t n,
                                       int64_t lo, int64_t hi, float *row) {
    for (int64_t r = lo; r < hi; r++) {
        float *yr = y + r * ldc;
        const float *res = p->residual + r * n;
        __m512 sum = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(yr + c),
                                                   _mm512_loadu_ps(p->bias + c)),
                                     _mm512_loadu_ps(res + c));
            _mm512_storeu_ps(row + c, v);
            sum = _mm512_add_ps(sum, v);
        }
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)n);
        __m512 sq = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(row + c), mean);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        const float var = _mm512_reduce_add_ps(sq) / (float)n;
        const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(var + p->eps));
        for (int64_t c = 0; c < n; c += 16) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + c), mean), scale);
            _mm512_storeu_ps(yr + c, _mm512_fmadd_ps(d, _mm512_loadu_ps(p->gamma + c),
                                                     _mm512_loadu_ps(p->beta + c)));
        }
    }
}

static void quant_gemm_task(void *ctx, int64_t t) {
    QuantGemm *g = ctx;
    const Int8Epilogue *p = g->epi;
    const int64_t lo = t * g->rows, hi = lo + g->rows < g->n ? lo + g->rows : g->n;
    const size_t elem = g->format == QUANT_I16 ? 2 : 1;
    const size_t qbytes = g->x ? ((size_t)(hi - lo) * g->k * elem + 63) / 64 * 64 : 0;
    const int requantize = p && p->q_out; /* the result rows feed the next GEMM only */
    char *buffer = thread_buffer(qbytes + (size_t)(requantize ? hi - lo : 1) * g->m
                                 * sizeof(float));
    if (!buffer) {
        g->failed = 1;
        return;
    }
    float scale[TILE_ROWS];
    const void *a = buffer;
    const float *row_scale = scale;
    if (g->x) {
        quantize_rows8(g->x + lo * g->k, g->mul, buffer, scale, g->k, 0, hi - lo, g->format);
    } else {
        a = (const char *)g->q_in + lo * g->k * elem;
        row_scale = g->scale_in + lo;
    }
    float *dst = requantize ? (float *)(buffer + qbytes) : g->out + lo * g->ldc;
    const int64_t ldd = requantize ? g->m : g->ldc;
    const Epilogue e = {g->corr, row_scale, g->col_scale, dst, ldd, p ? p->gelu_bias : NULL};
    for (int64_t c0 = 0; c0 < g->m; c0 += PANEL)
        tile(g->kind, a, g->packed, &e, g->k, 0, hi - lo, c0,
             g->m - c0 < PANEL ? g->m - c0 : PANEL);
    if (p && p->gamma && g->kind == INT8_VNNI512) {
        const Int8Epilogue rows = {NULL, p->bias, p->residual + lo * g->m, p->gamma, p->beta,
                                   p->eps, NULL, NULL, NULL};
        add_layernorm_rows(dst, ldd, &rows, g->m, 0, hi - lo, (float *)(buffer + qbytes));
    } else if (p && p->gamma) { /* the 8-lane LayerNorm add_layer_norm_ runs (ldd == m) */
        seqenc_add_layernorm_rows(dst, p->bias, p->residual + lo * g->m, p->gamma, p->beta,
                                  p->eps, g->m, 0, hi - lo);
    }
    if (requantize) /* quantised as the next GEMM would quantise these rows, from the cache */
        quantize_rows8(dst, p->q_mul, (char *)p->q_out + lo * g->m * elem, p->scale_out + lo,
                       g->m, 0, hi - lo, g->format);
}

int seqenc_quant_gemm_int8(int kind, const float *x, const float *mul, const void *packed,
                           const int32_t *corr, const float *col_scale, float *out, int64_t n,
                           int64_t m, int64_t k, int64_t ldc, int threads,
                           const Int8Epilogue *epi, const void *q_in, const float *scale_in,
                           int openmp) {
    /* at least ~4 tasks a thread where n allows (balance), at most TILE_ROWS rows */
    int64_t rows = n / (4 * (int64_t)threads) / 8 * 8;
    rows = rows < 16 ? 16 : rows > TILE_ROWS ? TILE_ROWS : rows;
    QuantGemm g = {kind, kind == INT8_I16 ? QUANT_I16 : QUANT_U8, x, mul, packed, corr,
                   col_scale, out, n, m, k, ldc, rows, epi, q_in, scale_in, 0};
    const int64_t tasks = (n + rows - 1) / rows;
    if (openmp) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t t = 0; t < tasks; t++) quant_gemm_task(&g, t);
    } else {
        seqenc_run_tasks(quant_gemm_task, &g, tasks, threads);
    }
    return g.failed ? -1 : 0;
}

/* Bit i set: this CPU runs int8 kernel i (INT8_I16 needs AVX2, the others their VNNI). */
int seqenc_int8_kernels(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return 0;
    int kinds = 1 << INT8_I16;
    if (__builtin_cpu_supports("avxvnni")) kinds |= 1 << INT8_VNNI256;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vnni"))
        kinds |= 1 << INT8_VNNI512;
    return kinds;
}
#endif
