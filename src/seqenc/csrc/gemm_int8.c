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
 *   INT8_AMX (AMX-INT8): VNNI512's operands, packing and corr; tdpbusd tiles of 16 rows x 16
 *     columns x 64 k read 16 k-groups of a panel's 16 columns as one B tile.
 *   INT8_U8S7 and INT8_U7S7 (AVX2, vpmaddubsw): the VNNI kernels' quads and shift, with 7-bit
 *     weights (|w| <= 64) so that vpmaddubsw's int16 sums cannot saturate; U7S7 also takes
 *     7-bit activations (|q| <= 63, shifted by 64), which lets it add two of them in int16
 *     before widening (gemm_int8_avx2.c has the bounds).
 *   The micro-kernels: gemm_int8_vnni.c (VNNI), gemm_int8_amx.c (AMX), gemm_int8_avx2.c (I16,
 *   U8S7, U7S7).
 * Every partial sum is bounded by K 255 127 < 2^31 for K <= 65536 (module.c checks K), so the
 * int32 sums are exact: int8 quality depends on the quantisation alone, on every CPU.
 *
 * Work: tiles of up to TILE_ROWS rows x one panel (or, in seqenc_quant_gemm_int8, a block of
 * rows x every panel), taken one at a time from OpenMP's dynamic schedule or tasks.c's
 * counter: a thread that loses its core for a while takes fewer tiles instead of owning half
 * of the GEMM (oneDNN's split is static). Panel-major order, so a thread's next tile mostly
 * reuses the panel in its cache.
 */
#include "int8_tile.h"
#include "scratch.h"
#include "tasks.h"

#ifdef SEQENC_X86
#include <stdatomic.h>

/* Rows lo .. hi of A against the panels from column c0 (a panel's first) to c1. AMX takes
 * them in one call (one tile configuration); VNNI512 the K that AMX's tiles do not. */
static void tiles(int kind, const void *a, const void *packed, const Epilogue *e, int64_t k,
                  int64_t lo, int64_t hi, int64_t c0, int64_t c1) {
    if (kind == INT8_AMX && k % 64 == 0) {
        seqenc_int8_tile_amx(a, packed, e, k, lo, hi, c0, c1);
        return;
    }
    for (int64_t p = c0; p < c1; p += PANEL) {
        const int64_t width = c1 - p < PANEL ? c1 - p : PANEL;
        if (kind == INT8_VNNI512 || kind == INT8_VNNI256 || kind == INT8_AMX)
            seqenc_int8_tile_vnni(kind == INT8_AMX ? INT8_VNNI512 : kind, a, packed, e, k, lo, hi,
                                  p, width);
        else
            seqenc_int8_tile_avx2(kind, a, packed, e, k, lo, hi, p, width);
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
    tiles(g->kind, g->a, g->packed, &g->e, g->k, lo, lo + TILE_ROWS < g->n ? lo + TILE_ROWS : g->n,
          c0, c0 + width);
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
    const void *q_in;           /* with x NULL: rows quantised already (kind's format), and */
    const float *scale_in;      /* their scales */
    _Atomic int failed;         /* a task found no memory for its buffer */
} QuantGemm;

/* rows lo .. hi of x into q: seqenc_int8_quantize_rows, or its 16-lane twin (the same bits)
 * in the tasks of the kinds that run AVX-512 */
static void quantize_rows(int kind, const float *x, const float *mul, void *q, float *scale,
                          int64_t n, int64_t lo, int64_t hi, int format) {
    if ((kind == INT8_VNNI512 || kind == INT8_AMX) && format == QUANT_U8 && n % 16 == 0)
        seqenc_int8_quantize_rows512(x, mul, q, scale, n, lo, hi);
    else
        seqenc_int8_quantize_rows(x, mul, q, scale, n, lo, hi, format);
}

static void quant_gemm_task(void *ctx, int64_t t) {
    QuantGemm *g = ctx;
    const Int8Epilogue *p = g->epi;
    const int64_t lo = t * g->rows, hi = lo + g->rows < g->n ? lo + g->rows : g->n;
    const size_t elem = g->format == QUANT_I16 ? 2 : 1;
    const size_t qbytes = g->x ? ((size_t)(hi - lo) * g->k * elem + 63) / 64 * 64 : 0;
    const int requantize = p && p->q_out; /* the result rows feed the next GEMM only */
    const size_t out_bytes = (size_t)(requantize ? hi - lo : 1) * g->m * sizeof(float);
    char *buffer = seqenc_thread_buffer(SCRATCH_INT8, qbytes + out_bytes);
    if (!buffer) {
        g->failed = 1;
        return;
    }
    float scale[TILE_ROWS];
    const void *a = buffer;
    const float *row_scale = scale;
    if (g->x) {
        quantize_rows(g->kind, g->x + lo * g->k, g->mul, buffer, scale, g->k, 0, hi - lo,
                      g->format);
    } else {
        a = (const char *)g->q_in + lo * g->k * elem;
        row_scale = g->scale_in + lo;
    }
    float *dst = requantize ? (float *)(buffer + qbytes) : g->out + lo * g->ldc;
    const int64_t ldd = requantize ? g->m : g->ldc;
    const Epilogue e = {g->corr, row_scale, g->col_scale, dst, ldd, p ? p->gelu_bias : NULL};
    tiles(g->kind, a, g->packed, &e, g->k, 0, hi - lo, 0, g->m);
    if (p && p->gamma && (g->kind == INT8_VNNI512 || g->kind == INT8_AMX)) {
        const Int8Epilogue rows = {NULL, p->bias, p->residual + lo * g->m, p->gamma, p->beta,
                                   p->eps, NULL, NULL, NULL, -1};
        seqenc_int8_add_layernorm512(dst, ldd, &rows, g->m, 0, hi - lo,
                                     (float *)(buffer + qbytes));
    } else if (p && p->gamma) { /* the 8-lane LayerNorm add_layer_norm_ runs (ldd == m) */
        seqenc_add_layernorm_rows(dst, p->bias, p->residual + lo * g->m, p->gamma, p->beta,
                                  p->eps, g->m, 0, hi - lo);
    }
    if (requantize) { /* quantised as the next GEMM would quantise these rows, from the cache */
        const int format = p->q_format >= 0 ? p->q_format : g->format;
        quantize_rows(g->kind, dst, p->q_mul,
                      (char *)p->q_out + lo * g->m * (format == QUANT_I16 ? 2 : 1),
                      p->scale_out + lo, g->m, 0, hi - lo, format);
    }
}

int seqenc_quant_gemm_int8(int kind, const float *x, const float *mul, const void *packed,
                           const int32_t *corr, const float *col_scale, float *out, int64_t n,
                           int64_t m, int64_t k, int64_t ldc, int threads,
                           const Int8Epilogue *epi, const void *q_in, const float *scale_in,
                           int openmp) {
    /* at least ~4 tasks a thread where n allows (balance), at most TILE_ROWS rows */
    int64_t rows = n / (4 * (int64_t)threads) / 8 * 8;
    rows = rows < 16 ? 16 : rows > TILE_ROWS ? TILE_ROWS : rows;
    QuantGemm g = {kind, seqenc_int8_format(kind), x, mul, packed, corr,
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

int seqenc_int8_format(int kind) {
    return kind == INT8_I16 ? QUANT_I16 : kind == INT8_U7S7 ? QUANT_U7 : QUANT_U8;
}

/* Bit i set: this CPU runs int8 kernel i (INT8_I16, U8S7 and U7S7 need AVX2, the others their
 * VNNI; AMX also AVX512-VNNI and the kernel's leave to use the tiles). */
int seqenc_int8_kernels(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return 0;
    int kinds = 1 << INT8_I16 | 1 << INT8_U8S7 | 1 << INT8_U7S7;
    if (__builtin_cpu_supports("avxvnni")) kinds |= 1 << INT8_VNNI256;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vnni")) {
        kinds |= 1 << INT8_VNNI512;
        if (seqenc_int8_amx_runs()) kinds |= 1 << INT8_AMX; /* its epilogues are VNNI512's */
    }
    return kinds;
}
#endif
