/* attention.c's self-attention over packed sequences with 16 lanes (AVX-512), head sizes that
 * are multiples of 16.
 *
 * Why a second kernel: on the AVX-512 CPUs here (Zen 5) 512-bit FMAs run at full width, and in
 * a bf16 encode attention was the largest piece after the GEMMs (~12% of its CPU time) while
 * running 8 lanes. Same algorithm and float32 arithmetic as attention.c, so the same bound
 * (kernels.ATTENTION_ERROR); only the blocking differs. A task is one sequence's heads:
 *   staging  its rows read once, in order, into scratch: q + bias times the scale, v, K^T
 *   scores   up to QB = 8 queries (4 past 48 keys) x all keys (<= 64) in registers, over the
 *            head dimension, then each query's softmax from those registers, keys past L masked
 *            (longer sequences: 8 x 32 blocks of scores, then the softmax row by row)
 *   outputs  the same <= 8 queries x 32 output dims per step, over the keys
 * A block of fewer than 8 queries (a sequence's last) runs an instance compiled for exactly that
 * many rows, so short sequences do no work for rows they do not have.
 * The projection is read as float32 or bfloat16 (converted as loaded), and the output written as
 * float32 or bfloat16 (rounded once to nearest even, vcvtneps2bf16) independently: a bf16 GEMM
 * after attention takes its bf16 output as it is, with no conversion pass between them.
 */
#include "simd512.h"

#ifdef SEQENC_X86
#define QB 8

/* 16 values of the projection from element index i, as float32. */
AVX512BF16 static inline __m512 load_in(const Problem *pr, int64_t i) {
    return pr->qkv16 ? load_bf16(pr->qkv16 + i) : _mm512_loadu_ps(pr->qkv + i);
}

/* 16 output values at element index i, in the output's dtype. */
AVX512BF16 static inline void store_out(const Problem *pr, int64_t i, __m512 v) {
    if (pr->out16)
        store_bf16(pr->out16 + i, v);
    else
        _mm512_storeu_ps(pr->out + i, v);
}

/* p[r][0:Lp] = q_r . kt[:, j] for rows r < rows (q: rows x hd, kt: hd x Lp, Lp % 16 == 0);
 * always inlined with a constant `rows` so the accumulators stay in registers. */
__attribute__((always_inline)) AVX512 static inline void scores(
    const float *q, int64_t hd, const float *kt, int64_t Lp, float *p, const int rows) {
    int64_t j = 0;
    for (; j + 32 <= Lp; j += 32) {
        __m512 a[QB][2];
        for (int r = 0; r < rows; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const __m512 k0 = _mm512_load_ps(kt + d * Lp + j);
            const __m512 k1 = _mm512_load_ps(kt + d * Lp + j + 16);
            for (int r = 0; r < rows; r++) {
                const __m512 x = _mm512_set1_ps(q[r * hd + d]);
                a[r][0] = _mm512_fmadd_ps(x, k0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(x, k1, a[r][1]);
            }
        }
        for (int r = 0; r < rows; r++) {
            _mm512_store_ps(p + r * Lp + j, a[r][0]);
            _mm512_store_ps(p + r * Lp + j + 16, a[r][1]);
        }
    }
    if (j < Lp) {  /* the last 16 keys */
        __m512 a[QB];
        for (int r = 0; r < rows; r++) a[r] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const __m512 k = _mm512_load_ps(kt + d * Lp + j);
            for (int r = 0; r < rows; r++)
                a[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r * hd + d]), k, a[r]);
        }
        for (int r = 0; r < rows; r++) _mm512_store_ps(p + r * Lp + j, a[r]);
    }
}

/* Each row of p[r][0:L] -> exp(p - its max) in place, zeros in [L, Lp); inv[r] = 1 / their
 * sum. The keys past L are masked in registers (their scores are the zero keys' 0, not -inf). */
AVX512 static void softmax_numerators(float *p, int64_t L, int64_t Lp, int rows, float *inv) {
    const int64_t last = Lp - 16;
    const __mmask16 valid = (__mmask16)((1u << (L - last)) - 1u);  /* 1 <= L - last <= 16 */
    const __m512 lowest = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < rows; r++) {
        float *row = p + r * Lp;
        __m512 m = _mm512_mask_load_ps(lowest, valid, row + last);
        for (int64_t j = 0; j < last; j += 16) m = _mm512_max_ps(m, _mm512_load_ps(row + j));
        const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < last; j += 16) {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_load_ps(row + j), top));
            _mm512_store_ps(row + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        const __m512 e = _mm512_maskz_mov_ps(valid,
                                             exp512(_mm512_sub_ps(_mm512_load_ps(row + last), top)));
        _mm512_store_ps(row + last, e);
        inv[r] = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum, e));
    }
}

/* out[r] = (sum_j p[r][j] v[j]) inv[r] + v_bias for rows r < rows, stored from element dst
 * (rows D apart); v: L rows vstride apart; hd % 16 == 0. Constant `rows`, as in scores(). */
__attribute__((always_inline)) AVX512BF16 static inline void outputs(
    const Problem *pr, const float *p, int64_t Lp, int64_t L, const float *v, int64_t vstride,
    const float *inv, const float *v_bias, int64_t dst, const int rows) {
    const int64_t hd = pr->hd, D = pr->D;
    int64_t d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) {
        __m512 o[QB][2];
        for (int r = 0; r < rows; r++) o[r][0] = o[r][1] = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            const __m512 x0 = _mm512_loadu_ps(v + j * vstride + d0);
            const __m512 x1 = _mm512_loadu_ps(v + j * vstride + d0 + 16);
            for (int r = 0; r < rows; r++) {
                const __m512 b = _mm512_set1_ps(p[r * Lp + j]);
                o[r][0] = _mm512_fmadd_ps(b, x0, o[r][0]);
                o[r][1] = _mm512_fmadd_ps(b, x1, o[r][1]);
            }
        }
        const __m512 c0 = _mm512_loadu_ps(v_bias + d0), c1 = _mm512_loadu_ps(v_bias + d0 + 16);
        for (int r = 0; r < rows; r++) {
            const __m512 n = _mm512_set1_ps(inv[r]);
            store_out(pr, dst + r * D + d0, _mm512_fmadd_ps(o[r][0], n, c0));
            store_out(pr, dst + r * D + d0 + 16, _mm512_fmadd_ps(o[r][1], n, c1));
        }
    }
    if (d0 < hd) {  /* the last 16 dims */
        __m512 o[QB];
        for (int r = 0; r < rows; r++) o[r] = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            const __m512 x = _mm512_loadu_ps(v + j * vstride + d0);
            for (int r = 0; r < rows; r++)
                o[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r * Lp + j]), x, o[r]);
        }
        const __m512 c = _mm512_loadu_ps(v_bias + d0);
        for (int r = 0; r < rows; r++)
            store_out(pr, dst + r * D + d0, _mm512_fmadd_ps(o[r], _mm512_set1_ps(inv[r]), c));
    }
}

/* The max (MAX 1) or sum (MAX 0) of each of m[0..7]'s 16 lanes, all eight in one vector:
 * row r's in lanes ROW_LANE(r) and the next. Shuffles halve every vector and pair them up, 31
 * operations where eight _mm512_reduce_*_ps take ~64 (each a chain of 8 dependent steps). */
#define ROW_LANE(r) ((r) < 4 ? 4 * (r) : 4 * ((r) - 4) + 2)
__attribute__((always_inline)) AVX512 static inline __m512 reduce8(const __m512 m[8],
                                                                    const int max) {
#define OP(x, y) (max ? _mm512_max_ps(x, y) : _mm512_add_ps(x, y))
    __m512 a[4], b[2];
    for (int i = 0; i < 4; i++)  /* lanes 0-7: m[2i] folded to 8, lanes 8-15: m[2i+1] */
        a[i] = OP(_mm512_shuffle_f32x4(m[2 * i], m[2 * i + 1], 0x44),
                  _mm512_shuffle_f32x4(m[2 * i], m[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++)  /* 128-bit quarter k: m[4i + k] folded to 4 */
        b[i] = OP(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                  _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
    /* quarter k: lanes 0-1 m[k] folded to 2, lanes 2-3 m[4 + k] */
    const __m512 c = OP(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b[0]),
                                                            _mm512_castps_pd(b[1]))),
                        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b[0]),
                                                            _mm512_castps_pd(b[1]))));
    return OP(c, _mm512_permute_ps(c, 0xB1));  /* each lane pair: its row's whole */
#undef OP
}

/* scores() and softmax_numerators() for keys of at most 4 vectors (L <= 64, most sentences):
 * all rows x nk vectors of scores in registers (<= 24), so the softmax starts from them (no
 * store and reload between the two), its rows' maxima and sums reduced together (reduce8) and
 * their 1 / sum by one vector division. The same arithmetic but for the order of each row's
 * sum (a tree over its 16 lanes either way). Constant `rows` and `nk`. */
__attribute__((always_inline)) AVX512 static inline void scores_softmax(
    const float *q, int64_t hd, const float *kt, int64_t Lp, int64_t L, float *p, float *inv,
    const int rows, const int nk) {
    __m512 a[QB][4];
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < nk; k++) a[r][k] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        __m512 key[4];
        for (int k = 0; k < nk; k++) key[k] = _mm512_load_ps(kt + d * Lp + 16 * k);
        for (int r = 0; r < rows; r++) {
            const __m512 x = _mm512_set1_ps(q[r * hd + d]);
            for (int k = 0; k < nk; k++) a[r][k] = _mm512_fmadd_ps(x, key[k], a[r][k]);
        }
    }
    const __mmask16 valid = (__mmask16)((1u << (L - 16 * (nk - 1))) - 1u);  /* 1..16 lanes */
    __m512 m[8];
    for (int r = 0; r < 8; r++) {  /* rows past `rows` repeat row 0: reduced, never used */
        const int from = r < rows ? r : 0;
        m[r] = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, a[from][nk - 1]);
        for (int k = 0; k + 1 < nk; k++) m[r] = _mm512_max_ps(m[r], a[from][k]);
    }
    const __m512 tops = reduce8(m, 1);
    for (int r = 0; r < 8; r++) {
        const int from = r < rows ? r : 0;
        const __m512 top = _mm512_permutexvar_ps(_mm512_set1_epi32(ROW_LANE(r)), tops);
        m[r] = _mm512_setzero_ps();  /* now the sums */
        for (int k = 0; k < nk; k++) {
            __m512 e = exp512(_mm512_sub_ps(a[from][k], top));
            if (k == nk - 1) e = _mm512_maskz_mov_ps(valid, e);
            if (r < rows) _mm512_store_ps(p + r * Lp + 16 * k, e);
            m[r] = _mm512_add_ps(m[r], e);
        }
    }
    float inverse[16];
    _mm512_storeu_ps(inverse, _mm512_div_ps(_mm512_set1_ps(1.0f), reduce8(m, 0)));
    for (int r = 0; r < rows; r++) inv[r] = inverse[ROW_LANE(r)];
}

/* One block of `rows` queries: scores, softmax, outputs. */
__attribute__((always_inline)) AVX512BF16 static inline void block(
    const Problem *pr, const float *q, const float *kt, float *p, int64_t L, int64_t Lp,
    const float *v, int64_t vstride, const float *v_bias, int64_t dst, const int rows) {
    float inv[QB];
    const int64_t hd = pr->hd;
    const int half = rows < 4 ? rows : 4;  /* 4 vectors of keys: 4 rows at a time */
    switch (Lp / 16) {
        case 1: scores_softmax(q, hd, kt, Lp, L, p, inv, rows, 1); break;
        case 2: scores_softmax(q, hd, kt, Lp, L, p, inv, rows, 2); break;
        case 3: scores_softmax(q, hd, kt, Lp, L, p, inv, rows, 3); break;
        case 4:
            scores_softmax(q, hd, kt, Lp, L, p, inv, half, 4);
            if (rows > 4)
                scores_softmax(q + 4 * hd, hd, kt, Lp, L, p + 4 * Lp, inv + 4, rows - half, 4);
            break;
        default:
            scores(q, hd, kt, Lp, p, rows);
            softmax_numerators(p, L, Lp, rows, inv);
    }
    outputs(pr, p, Lp, L, v, vstride, inv, v_bias, dst, rows);
}

AVX512BF16 static void block_any(const Problem *pr, const float *q, const float *kt, float *p,
                                 int64_t L, int64_t Lp, const float *v, int64_t vstride,
                                 const float *v_bias, int64_t dst, int rows) {
#define BLOCK(ROWS) block(pr, q, kt, p, L, Lp, v, vstride, v_bias, dst, ROWS); break
    switch (rows) {
        case 8: BLOCK(8);
        case 7: BLOCK(7);
        case 6: BLOCK(6);
        case 5: BLOCK(5);
        case 4: BLOCK(4);
        case 3: BLOCK(3);
        case 2: BLOCK(2);
        default: BLOCK(1);
    }
#undef BLOCK
}

/* r[i][j] -> r[j][i], 16 x 16 floats: 64 shuffles (simd.h's transpose8 takes 24 for 8 x 8). */
AVX512 static inline void transpose16(__m512 r[16]) {
#define PD(x) _mm512_castps_pd(x)
#define PS(x) _mm512_castpd_ps(x)
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {  /* pairs of rows interleaved, 2 x 2 blocks */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  /* 4 x 4 blocks inside each 128-bit lane */
        r[i] = PS(_mm512_unpacklo_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 1] = PS(_mm512_unpackhi_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 2] = PS(_mm512_unpacklo_pd(PD(t[i + 1]), PD(t[i + 3])));
        r[i + 3] = PS(_mm512_unpackhi_pd(PD(t[i + 1]), PD(t[i + 3])));
    }
#undef PD
#undef PS
    for (int h = 0; h < 16; h += 8)  /* then the 4 x 4 blocks themselves moved */
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Per-thread scratch, float32, for one task (a sequence's heads h0 .. h1): their queries with
 * the bias added and times the scale, and their values, (H, L, hd) each; their keys transposed,
 * (H, hd, Lp); one block of scores, (QB, Lp). */
typedef struct {
    float *q, *v, *kt, *p;
} Scratch;

/* Heads h0 .. h1 of one sequence, rows start .. start+L of the packed batch; next_start,
 * next_L: the rows of the sequence this thread runs next, to prefetch (next_L 0: none).
 *
 * Why the rows are first copied into scratch: a (sequence, head) reads hd values from each of
 * its rows, 3D values apart, a stride the CPU's prefetchers do not follow, so reading q, k and v
 * where they lie stalled on cache misses (a third of the kernel's time at 32 x 37 rows, measured
 * against the same work on rows in cache; software prefetches of the next head's rows did not
 * help). One pass over the sequence's rows in order (16 at a time: K^T is built from 16 x 16
 * transposes) streams them at the memory's pace, and each head then works in L1/L2. */
AVX512BF16 static void attend_heads512(const Problem *pr, int64_t start, int64_t L, int64_t h0,
                                       int64_t h1, const Scratch *s, int64_t next_start,
                                       int64_t next_L) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd, Lp = (L + 15) & ~(int64_t)15;
    const int64_t c0 = h0 * hd, c1 = h1 * hd;  /* the columns of heads h0 .. h1 */
    const __m512 scale = _mm512_set1_ps(pr->scale);
    if (L == 0) return;
    for (int64_t j = 0; j < Lp; j += 16) {
        /* K^T, 16 keys x 16 dims at a time; keys past L are zeros. Each store is one whole
         * cache line of K^T (8 x 8 blocks wrote half lines, each line twice, far apart) */
        for (int64_t c = c0; c < c1; c += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = j + i < L ? load_in(pr, (start + j + i) * stride + D + c)
                                 : _mm512_setzero_ps();
            transpose16(r);
            float *kt = s->kt + (c - c0) * Lp + j;  /* head (c - c0) / hd, dim (c - c0) % hd */
            for (int i = 0; i < 16; i++) _mm512_store_ps(kt + i * Lp, r[i]);
        }
        /* the same rows' queries (+ bias, x scale) and values */
        for (int64_t i = j; i < j + 16 && i < L; i++) {
            const int64_t row = (start + i) * stride;
            for (int64_t c = c0; c < c1; c += 16) {
                const int64_t at = ((c - c0) / hd * L + i) * hd + (c - c0) % hd;
                _mm512_store_ps(s->q + at, _mm512_mul_ps(_mm512_add_ps(
                    load_in(pr, row + c), _mm512_loadu_ps(pr->q_bias + c)), scale));
                _mm512_store_ps(s->v + at, load_in(pr, row + 2 * D + c));
            }
        }
    }
    /* while the heads run, the next sequence's rows (next_L of them, 0: none) into L2, a few
     * lines before each query block, so that its staging finds them there: 1.03-1.1x where the
     * rows come from memory (a batch larger than L2), the same in cache */
    const int64_t esize = pr->qkv16 ? 2 : 4;
    const char *ahead = (pr->qkv16 ? (const char *)pr->qkv16 : (const char *)pr->qkv)
                        + next_start * stride * esize;
    const char *const ahead_end = ahead + next_L * stride * esize;
    const int64_t blocks = (h1 - h0) * ((L + QB - 1) / QB);
    const int64_t lines = (next_L * stride * esize / 64 + blocks - 1) / blocks;
    for (int64_t h = h0; h < h1; h++) {
        const float *q = s->q + (h - h0) * L * hd, *v = s->v + (h - h0) * L * hd;
        const float *kt = s->kt + (h - h0) * hd * Lp, *v_bias = pr->v_bias + h * hd;
        for (int64_t i0 = 0; i0 < L; i0 += QB) {
            for (int64_t n = 0; n < lines && ahead < ahead_end; n++, ahead += 64)
                _mm_prefetch(ahead, _MM_HINT_T1);
            block_any(pr, q + i0 * hd, kt, s->p, L, Lp, v, hd, v_bias,
                      (start + i0) * D + h * hd, (int)(L - i0 < QB ? L - i0 : QB));
        }
    }
}

/* attention.c's seqenc_varlen_attention with this kernel; pr->hd % 16 == 0, and a bf16 output
 * needs AVX512-BF16. Returns 0, -1 without scratch memory, -2 for spans outside the rows.
 * A task is a sequence's heads, all of them (its rows read in one pass) unless there are too few
 * sequences to keep the threads busy: then each sequence's heads are split into groups. */
int seqenc_varlen_attention512(const Problem *pr, const int64_t *starts, const int64_t *lengths,
                               int64_t n_seq, int64_t n_rows, int threads) {
    int64_t max_len = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        if (starts[i] < 0 || lengths[i] < 0 || starts[i] > n_rows - lengths[i]) return -2;
        max_len = lengths[i] > max_len ? lengths[i] : max_len;
    }
    const int64_t H = pr->n_heads, hd = pr->hd, Lp = (max_len + 15) & ~(int64_t)15;
    int64_t groups = threads > 1 && n_seq < 2 * threads ? (2 * threads + n_seq - 1) / n_seq : 1;
    groups = groups < H ? groups : H;
    const int64_t per = (H + groups - 1) / groups;  /* heads a task */
    groups = (H + per - 1) / per;  /* none empty (12 heads in 10 groups: 6 of 2) */
    const int64_t tasks = n_seq * groups;
    const size_t floats = (size_t)(2 * per * max_len * hd + per * hd * Lp + QB * Lp);
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *buf = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
        if (buf == NULL) {
#pragma omp atomic write
            failed = 1;
        } else {
            const Scratch s = {buf, buf + per * max_len * hd, buf + 2 * per * max_len * hd,
                               buf + 2 * per * max_len * hd + per * hd * Lp};
            /* longest sequences first (the batches are length-sorted): dynamic balances */
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) {
                const int64_t i = t / groups, h0 = t % groups * per;
                /* one thread: its next task is t + 1 (with more, whichever comes free) */
                const int fresh = threads == 1 && t + 1 < tasks && (t + 1) / groups != i;
                attend_heads512(pr, starts[i], lengths[i], h0, h0 + per < H ? h0 + per : H, &s,
                                fresh ? starts[i + 1] : 0, fresh ? lengths[i + 1] : 0);
            }
            free(buf);
        }
    }
    return failed ? -1 : 0;
}
#endif
