/* The int8 micro-kernels for CPUs with AMX-INT8 (INT8_AMX; gemm_int8.c says how the weights are
 * packed and what the sums are). TDPBUSD multiplies a 16 x 64 uint8 tile of A (16 rows, 64 k)
 * by a 16 x 64-byte int8 tile of B (16 k-groups of 4, each 16 columns x 4 k) into a 16 x 16
 * int32 tile of C, the sums exact like vpdpbusd's (the same u8 x s8 products, added in int32):
 * 8 times vpdpbusd's work a cycle. The operands are VNNI512's as they are: uint8 activations
 * q + 128, and the packed panel's k-group rows (4 width bytes apart) are B's tile rows, so the
 * weights are packed once for both kinds and corr takes the shift back off the same way.
 *
 * Blocking: 2 row tiles x 2 column tiles of C (32 rows x 32 columns, all 8 tile registers with
 * the 2 A and 2 B tiles), the B tiles of a block from one panel or two (blocks do not stop at
 * the 48-column panels: no 2 x 1 blocks but at the end of the columns). Per 64-k step each
 * tile's next load follows the step's last product that reads it: tiles are not renamed, so a
 * load waits for those products, and this order lets it overlap the step's other products.
 * Each block's C tiles go to a scratch block (`Pending`) and through VNNI512's epilogue
 * arithmetic (store16's: corr, scales, GELU) on the same int32 sums, so the same bits as
 * VNNI512; that epilogue runs a share per k step of the next block, so AVX-512 works while
 * the tile unit does. The GELU is simd512.h's gelu512_for_int8 (the rows are quantised to
 * int8 next): ~14 operations a vector against the erf form's ~37, which made the up projection
 * GELU-bound (RESULTS.md, issue 14).
 * Measured (benchmarks/amx_kernels_ab.py, 1 thread, one MiniLM layer, N = 1184) against the
 * first version (2 x 2 and 2 x 1 blocks per panel, each block's epilogue after its products,
 * one vector at a time): RESULTS.md, issue 14.
 * K % 64 == 0 (gemm_int8.c runs the VNNI512 kernel otherwise); row tails take a second tile
 * configuration with fewer rows.
 *
 * Linux hands a process AMX's 8 KiB of tile state only on request (arch_prctl
 * ARCH_REQ_XCOMP_PERM, once: the permission is the process's, inherited by fork): amx.h's
 * seqenc_amx_usable asks, and INT8_AMX runs only where that succeeded and the CPU has
 * AMX-INT8. Every call loads its tile configuration (amx.h's amx_load_config) and releases the
 * tiles at the end, so a thread holds no tile state between GEMMs (no 8 KiB more to save on
 * each context switch). */
#include "int8_tile.h"
#include "amx.h"

#ifdef SEQENC_X86
int seqenc_int8_amx_runs(void) {
    static int runs = -1;
    if (runs < 0) {
        /* amx.h's permission (asked once, for the tile data every AMX kind uses), and the CPU
         * has AMX-INT8: CPUID leaf 7 EDX bit 25 (seqenc_amx_usable checked the max leaf) */
        unsigned int a, b, c, d = 0;
        if (seqenc_amx_usable())
            __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        runs = d >> 25 & 1;
    }
    return runs;
}
#endif

#ifdef SEQENC_AMX
/* Tile registers: C 0..3 (row tile i, column tile j: 2 i + j), A 4..5 (row tiles 0 and 1),
 * B 6..7. rows0, rows1: the row tiles' rows (rows1 0: one row tile); B's are 16 k-groups. */
AMX static void configure(int rows0, int rows1) {
    static const int8_t which[8] = {0, 0, 1, 1, 0, 1, -1, -1}; /* row tile 0/1, -1: B */
    TileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        const int rows = which[t] < 0 ? 16 : which[t] ? rows1 : rows0;
        c.rows[t] = (uint8_t)rows;
        c.colsb[t] = rows ? 64 : 0;
    }
    amx_load_config(&c);
}

/* The B tile of column col (a column tile's first) at k-step 0, in the panel that holds it,
 * and its row stride (the panel's 4 width bytes); k-step s is 16 strides further. c1: the end
 * of the columns asked for, a panel's end or M. The two tiles of a block may lie in two
 * panels (of different widths where the second is the last, narrower one). */
static inline const int8_t *b_tile(const int8_t *packed, int64_t k, int64_t c1, int64_t col,
                                   int64_t *ldb) {
    const int64_t p0 = col / PANEL * PANEL;
    *ldb = 4 * (c1 - p0 < PANEL ? c1 - p0 : PANEL);
    return packed + p0 * k + 4 * (col - p0);
}

/* A block's C tiles, stored for the epilogue, which runs while the next block's tiles work. */
typedef struct {
    int32_t c[4][16 * 16] __attribute__((aligned(64)));
    int64_t r0, c0; /* where tile 0 goes in the output */
    int rows, nb;   /* rows (both row tiles), column tiles (1, 2) */
    int done;       /* rows finished */
} Pending;

/* The epilogue of p's rows done .. until: store16's arithmetic in the same order (the same
 * bits as VNNI512; its GELU's short chains overlap from vector to vector without the erf
 * form's four-at-a-time interleaving). e's fields, the column vectors and the output's row pointer
 * live in locals: vector stores may alias anything, so the compiler would reload them after
 * each one. The bias is added by add_round (the same add), which gcc does not contract with
 * the product before it into one FMA (one rounding: not store16's bits) as it does
 * _mm512_add_ps here. */
__attribute__((always_inline)) AMX static inline void finish_cols(const Epilogue *e, Pending *p,
                                                                  int until, const int nb) {
    int r = p->done;
    if (r >= until) return;
    p->done = until;
    const float *row_scale = e->row_scale, *gelu_bias = e->gelu_bias;
    const int64_t ldc = e->ldc;
    __m512i corr[2];
    __m512 col[2], bias[2];
    for (int j = 0; j < nb; j++) {
        const int64_t c = p->c0 + 16 * j;
        corr[j] = e->corr ? _mm512_loadu_si512(e->corr + c) : _mm512_setzero_si512();
        col[j] = row_scale ? _mm512_loadu_ps(e->col_scale + c) : _mm512_setzero_ps();
        bias[j] = gelu_bias ? _mm512_loadu_ps(gelu_bias + c) : _mm512_setzero_ps();
    }
    /* row r's sums of column tile j, less corr */
#define SUMS(r, j)                                                                           \
    _mm512_sub_epi32(_mm512_load_si512(p->c[2 * ((r) >> 4) + (j)] + 16 * ((r) & 15)), corr[j])
    if (!row_scale) {
        int32_t *out = (int32_t *)e->out + (p->r0 + r) * ldc + p->c0;
        for (; r < until; r++, out += ldc)
            for (int j = 0; j < nb; j++) _mm512_storeu_si512(out + 16 * j, SUMS(r, j));
        return;
    }
    float *out = (float *)e->out + (p->r0 + r) * ldc + p->c0;
    const float *scale = row_scale + p->r0;
#define DEQUANTIZED(r, j)                                                                    \
    _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(SUMS(r, j)), _mm512_set1_ps(scale[r])),   \
                  col[j])
    for (; r < until; r++, out += ldc)
        for (int j = 0; j < nb; j++) {
            __m512 y = DEQUANTIZED(r, j);
            if (gelu_bias)
                y = gelu512_for_int8(_mm512_add_round_ps(y, bias[j], _MM_FROUND_CUR_DIRECTION));
            _mm512_storeu_ps(out + 16 * j, y);
        }
#undef DEQUANTIZED
#undef SUMS
}

/* finish_cols with p's column tiles a constant (the loops unrolled) */
__attribute__((always_inline)) AMX static inline void finish(const Epilogue *e, Pending *p,
                                                             int until) {
    if (p->nb == 2) finish_cols(e, p, until, 2);
    else finish_cols(e, p, until, 1);
}

/* C = A B over `steps` 64-k steps for 1 + two row tiles (a: the first row, k bytes apart) x
 * 1 + pair column tiles (b0, b1: their B tiles at step 0, strides ldb0, ldb1), stored to
 * `out`; between the steps, a share of the previous block's epilogue (`wait`): AVX-512 works
 * while the tile unit does; and prefetches for writing of this block's output lines (dst, its
 * `rows` rows), which its epilogue stores during the next block (stores to lines not in cache
 * cost the qkv GEMM ~1.3x). Inlined with constant two, pair. */
__attribute__((always_inline)) AMX static inline void block(
    const uint8_t *a, int64_t k, const int8_t *b0, int64_t ldb0, const int8_t *b1, int64_t ldb1,
    const Epilogue *e, Pending *wait, Pending *out, const char *dst, int rows, const int two,
    const int pair) {
    const int64_t steps = k / 64, ldd = e->ldc * 4;
    const int total = wait ? wait->rows : 0;
    _tile_zero(0);
    if (pair) _tile_zero(1);
    if (two) _tile_zero(2);
    if (two && pair) _tile_zero(3);
    /* Each tile's next load follows its last product of the step (tiles are not renamed: a
     * load waits for the products that read the tile), so it overlaps the step's other ones. */
    _tile_loadd(4, a, k);
    _tile_loadd(6, b0, ldb0);
    if (pair) _tile_loadd(7, b1, ldb1);
    if (two) _tile_loadd(5, a + 16 * k, k);
    for (int64_t s = 0; s < steps; s++) {
        const int more = s + 1 < steps;
        _tile_dpbusd(0, 4, 6);
        if (pair) _tile_dpbusd(1, 4, 7);
        if (more) _tile_loadd(4, a + 64 * (s + 1), k);
        if (two) _tile_dpbusd(2, 5, 6);
        if (more) _tile_loadd(6, b0 + 16 * (s + 1) * ldb0, ldb0);
        if (two && pair) _tile_dpbusd(3, 5, 7);
        if (more && pair) _tile_loadd(7, b1 + 16 * (s + 1) * ldb1, ldb1);
        if (more && two) _tile_loadd(5, a + 16 * k + 64 * (s + 1), k);
        for (int64_t r = s * rows / steps; r < (s + 1) * rows / steps; r++) {
            _mm_prefetch(dst + r * ldd, _MM_HINT_ET0);
            if (pair) _mm_prefetch(dst + r * ldd + 64, _MM_HINT_ET0);
        }
        if (wait) finish(e, wait, (int)((s + 1) * total / steps) / 4 * 4);
    }
    _tile_stored(0, out->c[0], 64);
    if (pair) _tile_stored(1, out->c[1], 64);
    if (two) _tile_stored(2, out->c[2], 64);
    if (two && pair) _tile_stored(3, out->c[3], 64);
}

/* Rows r .. r + rows (1..32) x column tiles col, col + 16 (or col alone where it is the
 * last): the products, with the previous block's epilogue finished meanwhile, then this
 * block's sums pending in the other slot. Flattened: everything inlined into the k loop,
 * constants and GELU table kept in registers. */
__attribute__((flatten)) AMX static void run_block(const uint8_t *a, const int8_t *packed,
                                                   const Epilogue *e, int64_t k, int64_t c1,
                                                   int64_t r, int rows, int64_t col,
                                                   Pending **wait, Pending *slots, int *slot) {
    int64_t ldb0, ldb1 = 0;
    const int pair = col + 16 < c1;
    const int8_t *b0 = b_tile(packed, k, c1, col, &ldb0);
    const int8_t *b1 = pair ? b_tile(packed, k, c1, col + 16, &ldb1) : b0;
    Pending *out = &slots[*slot];
    const uint8_t *ar = a + r * k;
    const char *dst = (const char *)e->out + (r * e->ldc + col) * 4;
    if (rows > 16 && pair) block(ar, k, b0, ldb0, b1, ldb1, e, *wait, out, dst, rows, 1, 1);
    else if (rows > 16) block(ar, k, b0, ldb0, b1, ldb1, e, *wait, out, dst, rows, 1, 0);
    else if (pair) block(ar, k, b0, ldb0, b1, ldb1, e, *wait, out, dst, rows, 0, 1);
    else block(ar, k, b0, ldb0, b1, ldb1, e, *wait, out, dst, rows, 0, 0);
    if (*wait) finish(e, *wait, (*wait)->rows); /* what the steps left */
    out->r0 = r, out->c0 = col, out->rows = rows, out->nb = 1 + pair, out->done = 0;
    *wait = out;
    *slot ^= 1;
}

/* Rows lo .. hi of A (uint8 q + 128, k per row) against the panels from column c0 (a panel's
 * first) to c1, through e. k % 64 == 0. Blocks of 32 rows x 32 columns, row block by row
 * block (each block's output lines follow the last one's, which the hardware prefetcher
 * streams; a column pair's 64 rows at a time, B read once per task, measured 1.8x slower on
 * the qkv GEMM), the last rows with a second tile configuration. */
AMX void seqenc_int8_tile_amx(const void *a, const void *packed, const Epilogue *e, int64_t k,
                              int64_t lo, int64_t hi, int64_t c0, int64_t c1) {
    const int64_t full = lo + (hi - lo) / 32 * 32;
    const int tail = (int)(hi - full);
    Pending slots[2], *wait = NULL;
    int slot = 0;
    if (full > lo) configure(16, 16);
    for (int64_t r = lo; r < hi; r += 32) {
        if (r == full) configure(tail < 16 ? tail : 16, tail < 16 ? 0 : tail - 16);
        for (int64_t col = c0; col < c1; col += 32)
            run_block(a, packed, e, k, c1, r, r < full ? 32 : tail, col, &wait, slots, &slot);
    }
    _tile_release();
    if (wait) finish(e, wait, wait->rows);
}

/* peak.c's AMX-INT8 probe: tdpbusd into 6 independent C tiles from one A and one B tile, in
 * registers (no memory traffic): 16 x 16 x 64 products, each added, per instruction. The
 * operations done (0 where AMX does not run); *sink depends on them. */
AMX double seqenc_int8_amx_peak(int64_t iters, float *sink) {
    if (!seqenc_int8_amx_runs()) return 0.0;
    static const uint8_t ones[16 * 64] __attribute__((aligned(64))) = {1};
    int32_t c[16 * 16] __attribute__((aligned(64)));
    configure(16, 16);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    for (int64_t n = 0; n < iters; n++) {
        _tile_dpbusd(0, 6, 7);
        _tile_dpbusd(1, 6, 7);
        _tile_dpbusd(2, 6, 7);
        _tile_dpbusd(3, 6, 7);
        _tile_dpbusd(4, 6, 7);
        _tile_dpbusd(5, 6, 7);
    }
    _tile_stored(5, c, 64);
    _tile_release();
    *sink = (float)c[0];
    return 2.0 * 16 * 16 * 64 * 6 * (double)iters;
}
#elif defined(SEQENC_X86) /* no AMX intrinsics: never called (seqenc_int8_amx_runs is 0) */
void seqenc_int8_tile_amx(const void *a, const void *packed, const Epilogue *e, int64_t k,
                          int64_t lo, int64_t hi, int64_t c0, int64_t c1) {
    (void)a, (void)packed, (void)e, (void)k, (void)lo, (void)hi, (void)c0, (void)c1;
}

double seqenc_int8_amx_peak(int64_t iters, float *sink) {
    (void)iters, (void)sink;
    return 0.0;
}
#endif
