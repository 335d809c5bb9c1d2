/* seqenc._kernels: our CPU kernels for inference, called from seqenc/nn/kernels.py.
 *
 *   attention.c    self-attention over sequences packed back to back (no gathers, no mask)
 *   attention512.c the same with 16 lanes (AVX-512)
 *   elementwise.c  bias + GELU, and bias + residual + LayerNorm, each in one pass
 *   avx512.c       the same epilogues with 16 lanes, float32 or bf16; int8 (de)quantisation
 *   gemm_bf16.c    bf16-input GEMM with float32 output (AVX512-BF16), optional GELU epilogue
 *   gemm_bf16_amx.c  the same on AMX tiles, the same packed weights
 *   gemm_f32.c     float32 GEMM with 512-bit FMAs
 *   gemm_f32_avx2.c  float32 GEMM with AVX2 FMAs and the layer's epilogues fused
 *   gemm_int8.c    int8 GEMMs with exact int32 sums (AVX2, AVX-VNNI, AVX512-VNNI, AMX-INT8), on
 *                  tasks.c; micro-kernels in gemm_int8_vnni.c, gemm_int8_amx.c, gemm_int8_avx2.c
 *   tasks.c        a parallel for that ends when its tasks are done (not a barrier)
 *   peak.c         arithmetic peak probes
 *   simd.h, simd512.h  the helpers they share
 *
 * Work runs in parallel on the OpenMP runtime PyTorch itself loaded (same soname), so the
 * threads are PyTorch's and do not fight its GEMM threads for the cores. The kernel set is
 * chosen at run time (`best_isa()`: AVX2 + FMA, AVX-512, AVX512-BF16, AMX); without AVX2 + FMA
 * seqenc uses PyTorch's kernels. Built by setup.py as an optional extension: without a C
 * compiler seqenc still installs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "int8.h"
#include "simd512.h"

static PyObject *supported(PyObject *self, PyObject *args) {
    (void)self; (void)args;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    Py_RETURN_FALSE;
#endif
}

/* The best kernel set this CPU runs: ISA_AVX2, ISA_AVX512 (F, BW, VL, DQ), ISA_AVX512BF16
 * (also AVX512-BF16) or ISA_AMX (also AMX-TILE + AMX-BF16, tile data granted by Linux: asked
 * here, once); -1 without AVX2 + FMA. */
static PyObject *best_isa(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    long isa = -1;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ISA_AVX2;
    if (isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        isa = ISA_AVX512;
    if (isa == ISA_AVX512 && __builtin_cpu_supports("avx512bf16")) isa = ISA_AVX512BF16;
    if (isa == ISA_AVX512BF16 && seqenc_amx_usable()) isa = ISA_AMX;
#endif
    return PyLong_FromLong(isa);
}

#ifdef SEQENC_X86
static int valid_width(long long n, int threads) {
    if (n % 8 == 0 && threads > 0) return 1;
    PyErr_SetString(PyExc_ValueError, "width must be a multiple of 8");
    return 0;
}

/* Which implementation runs (isa, dtype) on width n: 512 for the AVX-512 one, 256 for the AVX2
 * one, 0 (with an error set) for a combination the kernels do not have. bf16 exists with 16
 * lanes only; float32 takes 16 lanes when asked for AVX-512 and n % 16 == 0. */
static int lanes_for(int isa, int dtype, long long n) {
    if (dtype == DTYPE_BF16) {
        if (isa >= ISA_AVX512BF16 && n % 16 == 0) return 512;
        PyErr_SetString(PyExc_ValueError,
                        "bf16 kernels need the avx512bf16 kernel set and a width divisible by 16");
        return 0;
    }
    if (dtype != DTYPE_F32 || isa < ISA_AVX2 || isa > ISA_AMX) {
        PyErr_SetString(PyExc_ValueError, "unknown kernel set or dtype");
        return 0;
    }
    return isa >= ISA_AVX512 && n % 16 == 0 ? 512 : 256;
}

/* attention(qkv_ptr, q_bias_ptr, v_bias_ptr, out_ptr, starts_ptr, lengths_ptr, n_seq, n_rows,
 *           n_heads, head_dim, scale, threads[, in_bf16[, out_bf16[, isa]]]): qkv bfloat16 when
 * in_bf16 is true (float32 otherwise), out bfloat16 when out_bf16 is (default: as qkv), the
 * biases always float32; isa (default ISA_AVX2) allows attention512.c's 16 lanes where the head
 * size is a multiple of 16 (and, for a bf16 output, the CPU has AVX512-BF16). Returns the lanes
 * that ran (256 or 512). Pointers are data_ptr()s of contiguous CPU tensors, checked by the
 * Python caller (seqenc/nn/kernels.py). The projection comes without
 * biases: the key bias adds the same q.b_k to every score of a row, which softmax cancels, and
 * the value bias comes out unchanged (weights sum to 1), so it is added to the output. */
static PyObject *attention(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long qkv, q_bias, v_bias, out, starts, lengths;
    long long n_seq, n_rows, n_heads, hd;
    float scale;
    int threads, in_bf16 = 0, out_bf16 = -1, isa = ISA_AVX2;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLfi|ppi", &qkv, &q_bias, &v_bias, &out, &starts,
                          &lengths, &n_seq, &n_rows, &n_heads, &hd, &scale, &threads, &in_bf16,
                          &out_bf16, &isa))
        return NULL;
    if (out_bf16 < 0) out_bf16 = in_bf16;
    if (hd <= 0 || hd % 8 != 0 || n_heads <= 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "head_dim must be a positive multiple of 8");
        return NULL;
    }
    Problem pr = {in_bf16 ? NULL : (const float *)(uintptr_t)qkv,
                  (const float *)(uintptr_t)q_bias, (const float *)(uintptr_t)v_bias,
                  out_bf16 ? NULL : (float *)(uintptr_t)out, n_heads, hd, n_heads * hd, scale,
                  in_bf16 ? (const uint16_t *)(uintptr_t)qkv : NULL,
                  out_bf16 ? (uint16_t *)(uintptr_t)out : NULL};
    const int lanes = isa >= ISA_AVX512 && hd % 16 == 0 && (!out_bf16 || isa >= ISA_AVX512BF16)
                      ? 512 : 256;
    int status;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        status = seqenc_varlen_attention512(&pr, (const int64_t *)(uintptr_t)starts,
                                            (const int64_t *)(uintptr_t)lengths, n_seq, n_rows,
                                            threads);
    else
        status = seqenc_varlen_attention(&pr, (const int64_t *)(uintptr_t)starts,
                                         (const int64_t *)(uintptr_t)lengths, n_seq, n_rows,
                                         threads);
    Py_END_ALLOW_THREADS
    if (status == -2) {
        PyErr_Format(PyExc_ValueError, "sequence spans run outside the %lld packed rows",
                     n_rows);
        return NULL;
    }
    if (status != 0) return PyErr_NoMemory();
    return PyLong_FromLong(lanes);
}

/* A bf16 copy beside a float32 result: only the 512-lane float32 kernels write it, with
 * AVX512-BF16. */
static int valid_bf16_output(unsigned long long ptr, int isa, int dtype, int lanes) {
    if (!ptr || (lanes == 512 && dtype == DTYPE_F32 && isa >= ISA_AVX512BF16)) return 1;
    PyErr_SetString(PyExc_ValueError, "a bf16 output needs float32 rows, a width divisible by 16 "
                                      "and the avx512bf16 kernel set");
    return 0;
}

/* bias_gelu(x_ptr, bias_ptr, rows, n, threads, isa, dtype): x = gelu(x + bias) in place (erf
 * form); returns the lanes of the implementation that ran (256 or 512). */
static PyObject *py_bias_gelu(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, bias;
    long long rows, n;
    int threads, isa, dtype;
    if (!PyArg_ParseTuple(args, "KKLLiii", &x, &bias, &rows, &n, &threads, &isa, &dtype))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    const int lanes = lanes_for(isa, dtype, n);
    if (!lanes) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        seqenc_bias_gelu512((void *)(uintptr_t)x, (const void *)(uintptr_t)bias, rows, n, threads,
                            dtype);
    else
        seqenc_bias_gelu((float *)(uintptr_t)x, (const float *)(uintptr_t)bias, rows, n, threads);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(lanes);
}

/* add_layernorm(y_ptr, bias_ptr, residual_ptr, gamma_ptr, beta_ptr, eps, rows, n, threads,
 * isa, dtype[, copy16_ptr]): y = LayerNorm(y + bias + residual) in place, and with copy16_ptr
 * (float32 y) the result rounded to bf16 into copy16 as well; returns the lanes that ran. */
static PyObject *py_add_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long y, bias, residual, gamma, beta, copy16 = 0;
    float eps;
    long long rows, n;
    int threads, isa, dtype, status = 0;
    if (!PyArg_ParseTuple(args, "KKKKKfLLiii|K", &y, &bias, &residual, &gamma, &beta, &eps,
                          &rows, &n, &threads, &isa, &dtype, &copy16))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    const int lanes = lanes_for(isa, dtype, n);
    if (!lanes || !valid_bf16_output(copy16, isa, dtype, lanes)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        status = seqenc_add_layernorm512((void *)(uintptr_t)y, (const void *)(uintptr_t)bias,
                                         (const void *)(uintptr_t)residual,
                                         (const void *)(uintptr_t)gamma,
                                         (const void *)(uintptr_t)beta, eps, rows, n, threads,
                                         dtype, (uint16_t *)(uintptr_t)copy16);
    else
        seqenc_add_layernorm((float *)(uintptr_t)y, (const float *)(uintptr_t)bias,
                      (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                      (const float *)(uintptr_t)beta, eps, rows, n, threads);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    return PyLong_FromLong(lanes);
}

/* quantize_rows(x_ptr, q_ptr, scale_ptr, rows, n, threads[, mul_ptr]): float32 (rows, n) ->
 * int8 with one scale per row, each column first multiplied by mul (float32 (n,), 0: none). dequantize_rows(acc_ptr, row_scale_ptr, col_scale_ptr, rows, n, threads): int32
 * -> float32 in place. AVX-512 only, n % 16 == 0 (checked by the caller, seqenc/int8.py). */
static PyObject *py_quantize_rows(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, q, scale, mul = 0;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKLLi|K", &x, &q, &scale, &rows, &n, &threads, &mul))
        return NULL;
    if (n % 16 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "width must be a multiple of 16");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_quantize_rows512((const float *)(uintptr_t)x, (const float *)(uintptr_t)mul,
                            (int8_t *)(uintptr_t)q, (float *)(uintptr_t)scale, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_dequantize_rows(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long acc, row_scale, col_scale;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKLLi", &acc, &row_scale, &col_scale, &rows, &n, &threads))
        return NULL;
    if (n % 16 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "width must be a multiple of 16");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_dequantize_rows512((int32_t *)(uintptr_t)acc, (const float *)(uintptr_t)row_scale,
                              (const float *)(uintptr_t)col_scale, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gemm_bf16(a_ptr, packed_ptr, c_ptr, n, m, k, ldc, threads[, gelu_bias_ptr]): C = A W^T, A
 * (n, k) bf16, W packed by seqenc/precision.py (gemm_bf16.c says how), C float32; with
 * gelu_bias_ptr (float32 (m,)) C = gelu(A W^T + bias) in bf16. to_bf16(x_ptr, y_ptr, n, k,
 * threads): float32 rows -> bf16 rows. AVX512-BF16 only; shapes and the CPU checked by the
 * caller (seqenc/nn/kernels.py) beyond the conditions tested here. */
static PyObject *py_gemm_bf16(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long a, packed, c, gelu_bias = 0;
    long long n, m, k, ldc;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKLLLLi|K", &a, &packed, &c, &n, &m, &k, &ldc, &threads,
                          &gelu_bias))
        return NULL;
    if (k % 2 || m % 16 || ldc < m || n < 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "gemm_bf16 needs k even, m % 16 == 0 and ldc >= m");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_gemm_bf16((const uint16_t *)(uintptr_t)a, (const uint16_t *)(uintptr_t)packed,
                     (float *)(uintptr_t)c, n, m, k, ldc, threads,
                     (const float *)(uintptr_t)gelu_bias);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gemm_bf16_amx(...): gemm_bf16's arguments and result on AMX tiles (k % 32 == 0). */
static PyObject *py_gemm_bf16_amx(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long a, packed, c, gelu_bias = 0;
    long long n, m, k, ldc;
    int threads, status;
    if (!PyArg_ParseTuple(args, "KKKLLLLi|K", &a, &packed, &c, &n, &m, &k, &ldc, &threads,
                          &gelu_bias))
        return NULL;
    if (k % 32 || m % 16 || ldc < m || n < 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "gemm_bf16_amx needs k % 32 == 0, m % 16 == 0 and "
                        "ldc >= m");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = seqenc_gemm_bf16_amx((const uint16_t *)(uintptr_t)a,
                                  (const uint16_t *)(uintptr_t)packed, (float *)(uintptr_t)c, n,
                                  m, k, ldc, threads, (const float *)(uintptr_t)gelu_bias);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_SetString(PyExc_ValueError, "AMX does not run here (seqenc_amx_usable)");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* gemm_f32(a_ptr, w_ptr, c_ptr, n, m, k, ldc, threads[, gelu_bias_ptr, bias_ptr, residual_ptr,
 * gamma_ptr, beta_ptr, eps]): C = A W^T in float32, W (m, k) float32 rows, then gemm_f32_avx2's
 * epilogues with avx512.c's arithmetic. AVX-512 only, checked by the caller (seqenc/nn). */
static PyObject *gemm_f32_call(PyObject *args, int w_packed) {
    unsigned long long a, w, c, gelu_bias = 0, bias = 0, residual = 0, gamma = 0, beta = 0;
    long long n, m, k, ldc;
    float eps = 0.0f;
    int threads, status;
    if (!PyArg_ParseTuple(args, "KKKLLLLi|KKKKKf", &a, &w, &c, &n, &m, &k, &ldc, &threads,
                          &gelu_bias, &bias, &residual, &gamma, &beta, &eps))
        return NULL;
    if (k <= 0 || m % 16 || ldc < m || n < 0 || threads <= 0 || (gamma && (gelu_bias
            || ldc != m || !bias || !residual || !beta))) {
        PyErr_SetString(PyExc_ValueError, "gemm_f32 needs k > 0, m % 16 == 0, ldc >= m; "
                        "LayerNorm also bias, residual, beta, ldc == m and no GELU");
        return NULL;
    }
    const F32Epilogue epi = {(const float *)(uintptr_t)gelu_bias, (const float *)(uintptr_t)bias,
                             (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                             (const float *)(uintptr_t)beta, eps};
    Py_BEGIN_ALLOW_THREADS
    status = seqenc_gemm_f32((const float *)(uintptr_t)a, (const float *)(uintptr_t)w,
                             w_packed, (float *)(uintptr_t)c, n, m, k, ldc, threads,
                             gelu_bias || gamma ? &epi : NULL);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_gemm_f32(PyObject *self, PyObject *args) {
    (void)self;
    return gemm_f32_call(args, 0);
}

/* gemm_f32_packed: gemm_f32 with w_ptr pack_f32's panels of W */
static PyObject *py_gemm_f32_packed(PyObject *self, PyObject *args) {
    (void)self;
    return gemm_f32_call(args, 1);
}

/* pack_f32(w_ptr, out_ptr, m, k): W (m, k) float32 rows -> the m k floats of the panels
 * gemm_f32_packed reads (out_ptr 64-byte aligned; m % 16 == 0). AVX-512 only. */
static PyObject *py_pack_f32(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long w, out;
    long long m, k;
    if (!PyArg_ParseTuple(args, "KKLL", &w, &out, &m, &k)) return NULL;
    if (k <= 0 || m <= 0 || m % 16 || out % 64) {
        PyErr_SetString(PyExc_ValueError, "pack_f32 needs k > 0, m % 16 == 0 and a "
                        "64-byte aligned output");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_pack_f32((const float *)(uintptr_t)w, (float *)(uintptr_t)out, m, k);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gemm_f32_avx2(a_ptr, w_ptr, c_ptr, n, m, k, ldc, threads[, gelu_bias_ptr, bias_ptr,
 * residual_ptr, gamma_ptr, beta_ptr, eps]): C = A W^T in float32 with AVX2 FMAs, then
 * gelu(C + gelu_bias), or with gamma_ptr LayerNorm(C + bias + residual) * gamma + beta (ldc ==
 * m); 0 pointers: none (simd.h's F32Epilogue). Layouts checked by seqenc/nn/gemm_avx2.py.
 * gemm_f32_avx2_packed: the same with w_ptr pack_f32_avx2's panels of W. */
static PyObject *gemm_f32_avx2_call(PyObject *args, int w_packed) {
    unsigned long long a, w, c, gelu_bias = 0, bias = 0, residual = 0, gamma = 0, beta = 0;
    long long n, m, k, ldc;
    float eps = 0.0f;
    int threads, status;
    if (!PyArg_ParseTuple(args, "KKKLLLLi|KKKKKf", &a, &w, &c, &n, &m, &k, &ldc, &threads,
                          &gelu_bias, &bias, &residual, &gamma, &beta, &eps))
        return NULL;
    if (k <= 0 || m % 16 || ldc < m || n < 0 || threads <= 0 || (gamma && (gelu_bias
            || ldc != m || !bias || !residual || !beta))) {
        PyErr_SetString(PyExc_ValueError, "gemm_f32_avx2 needs k > 0, m % 16 == 0, ldc >= m; "
                        "LayerNorm also bias, residual, beta, ldc == m and no GELU");
        return NULL;
    }
    const F32Epilogue epi = {(const float *)(uintptr_t)gelu_bias, (const float *)(uintptr_t)bias,
                             (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                             (const float *)(uintptr_t)beta, eps};
    Py_BEGIN_ALLOW_THREADS
    status = seqenc_gemm_f32_avx2((const float *)(uintptr_t)a, (const float *)(uintptr_t)w,
                                  w_packed, (float *)(uintptr_t)c, n, m, k, ldc, threads,
                                  gelu_bias || gamma ? &epi : NULL);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_gemm_f32_avx2(PyObject *self, PyObject *args) {
    (void)self;
    return gemm_f32_avx2_call(args, 0);
}

static PyObject *py_gemm_f32_avx2_packed(PyObject *self, PyObject *args) {
    (void)self;
    return gemm_f32_avx2_call(args, 1);
}

/* pack_f32_avx2(w_ptr, out_ptr, m, k): W (m, k) float32 rows -> m k floats of the panels
 * gemm_f32_avx2_packed reads (out_ptr 32-byte aligned; m % 16 == 0) */
static PyObject *py_pack_f32_avx2(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long w, out;
    long long m, k;
    if (!PyArg_ParseTuple(args, "KKLL", &w, &out, &m, &k)) return NULL;
    if (k <= 0 || m <= 0 || m % 16 || out % 32) {
        PyErr_SetString(PyExc_ValueError, "pack_f32_avx2 needs k > 0, m % 16 == 0 and a "
                        "32-byte aligned output");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_pack_f32_avx2((const float *)(uintptr_t)w, (float *)(uintptr_t)out, m, k);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_to_bf16(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, y;
    long long n, k;
    int threads;
    if (!PyArg_ParseTuple(args, "KKLLi", &x, &y, &n, &k, &threads)) return NULL;
    if (k % 16 || n < 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "to_bf16 needs a width divisible by 16");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_to_bf16((const float *)(uintptr_t)x, (uint16_t *)(uintptr_t)y, n, k, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gemm_int8(kind, a_ptr, packed_ptr, corr_ptr, row_scale_ptr, col_scale_ptr, out_ptr, n, m, k,
 * ldc, threads[, openmp]): gemm_int8.c's int8 GEMM (corr_ptr 0: none; row_scale_ptr 0: int32
 * out). quantize_int8(x_ptr, mul_ptr, q_ptr, scale_ptr, rows, n, threads, format[, openmp]):
 * its activations. openmp true: OpenMP's threads instead of tasks.c's.
 * int8_kernels(): a bit per kernel this CPU runs. Pointers and layouts are checked by the caller
 * (seqenc/int8.py); the shapes and the CPU here. */
static PyObject *py_gemm_int8(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long a, packed, corr, row_scale, col_scale, out;
    long long n, m, k, ldc;
    int kind, threads, openmp = 0;
    if (!PyArg_ParseTuple(args, "iKKKKKKLLLLi|p", &kind, &a, &packed, &corr, &row_scale,
                          &col_scale, &out, &n, &m, &k, &ldc, &threads, &openmp))
        return NULL;
    if (kind < 0 || kind >= INT8_KINDS || !(seqenc_int8_kernels() >> kind & 1)) {
        PyErr_Format(PyExc_ValueError, "int8 kernel %d does not run on this CPU", kind);
        return NULL;
    }
    if (k <= 0 || k % 4 || k > 65536 || m % 16 || ldc < m || n < 0 || threads <= 0
        || (row_scale && !col_scale)) {
        PyErr_SetString(PyExc_ValueError,
                        "gemm_int8 needs 0 < k <= 65536, k % 4 == 0, m % 16 == 0 and ldc >= m");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_gemm_int8(kind, (const void *)(uintptr_t)a, (const void *)(uintptr_t)packed,
                     (const int32_t *)(uintptr_t)corr, (const float *)(uintptr_t)row_scale,
                     (const float *)(uintptr_t)col_scale, (void *)(uintptr_t)out, n, m, k, ldc,
                     threads, openmp);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_quantize_int8(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, mul, q, scale;
    long long rows, n;
    int threads, format, openmp = 0;
    if (!PyArg_ParseTuple(args, "KKKKLLii|p", &x, &mul, &q, &scale, &rows, &n, &threads, &format,
                          &openmp))
        return NULL;
    if (n % 8 || rows < 0 || threads <= 0 || format < QUANT_I8 || format > QUANT_U7
        || !(seqenc_int8_kernels() & 1 << INT8_I16)) {
        PyErr_SetString(PyExc_ValueError,
                        "quantize_int8 needs AVX2, a width divisible by 8 and a known format");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    seqenc_quantize_int8((const float *)(uintptr_t)x, (const float *)(uintptr_t)mul,
                         (void *)(uintptr_t)q, (float *)(uintptr_t)scale, rows, n, threads,
                         format, openmp);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* quant_gemm_int8(kind, x_ptr, mul_ptr, packed_ptr, corr_ptr, col_scale_ptr, out_ptr, n, m, k,
 * ldc, threads[, gelu_bias_ptr, bias_ptr, residual_ptr, gamma_ptr, beta_ptr, eps, q_out_ptr,
 * scale_out_ptr, q_mul_ptr, q_in_ptr, scale_in_ptr, openmp, q_format (-1: the kind's)]):
 * quantize_int8 and gemm_int8 in one pass
 * over x (float32 out), then the optional epilogue (int8.h's Int8Epilogue; 0 pointers: none;
 * VNNI512 or I16, ldc == m for LayerNorm); x_ptr 0: the rows at q_in_ptr, quantised already. */
static PyObject *py_quant_gemm_int8(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, mul, packed, corr, col_scale, out;
    unsigned long long gelu_bias = 0, bias = 0, residual = 0, gamma = 0, beta = 0;
    unsigned long long q_out = 0, scale_out = 0, q_mul = 0, q_in = 0, scale_in = 0;
    float eps = 0.0f;
    long long n, m, k, ldc;
    int kind, threads, status, openmp = 0, q_format = -1;
    if (!PyArg_ParseTuple(args, "iKKKKKKLLLLi|KKKKKfKKKKKpi", &kind, &x, &mul, &packed, &corr,
                          &col_scale, &out, &n, &m, &k, &ldc, &threads, &gelu_bias, &bias,
                          &residual, &gamma, &beta, &eps, &q_out, &scale_out, &q_mul, &q_in,
                          &scale_in, &openmp, &q_format))
        return NULL;
    if (q_format < -1 || q_format > QUANT_U7) {
        PyErr_SetString(PyExc_ValueError, "q_format must be -1 or a QUANT_* format");
        return NULL;
    }
    const int layer_norm = gamma != 0;
    if ((gelu_bias || layer_norm || q_out || !x) && (kind == INT8_VNNI256 || (layer_norm && (
            ldc != m || !bias || !residual || !beta || q_out)) || (q_out && (!gelu_bias
            || !scale_out)) || (!x && (!q_in || !scale_in)))) {
        PyErr_SetString(PyExc_ValueError, "the epilogues and quantised inputs need a kernel "
                        "other than VNNI256; LayerNorm also bias, residual, beta and ldc == m; "
                        "q_out the GELU epilogue and scale_out; no x, q_in and scale_in");
        return NULL;
    }
    const Int8Epilogue epi = {(const float *)(uintptr_t)gelu_bias, (const float *)(uintptr_t)bias,
                              (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                              (const float *)(uintptr_t)beta, eps, (void *)(uintptr_t)q_out,
                              (float *)(uintptr_t)scale_out, (const float *)(uintptr_t)q_mul,
                              q_format};
    if (kind < 0 || kind >= INT8_KINDS || !(seqenc_int8_kernels() >> kind & 1)) {
        PyErr_Format(PyExc_ValueError, "int8 kernel %d does not run on this CPU", kind);
        return NULL;
    }
    if (k <= 0 || k % 8 || k > 65536 || m % 16 || ldc < m || n < 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "quant_gemm_int8 needs 0 < k <= 65536, k % 8 == 0, m % 16 == 0, ldc >= m");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = seqenc_quant_gemm_int8(kind, (const float *)(uintptr_t)x,
                                    (const float *)(uintptr_t)mul, (const void *)(uintptr_t)packed,
                                    (const int32_t *)(uintptr_t)corr,
                                    (const float *)(uintptr_t)col_scale, (float *)(uintptr_t)out,
                                    n, m, k, ldc, threads,
                                    gelu_bias || layer_norm ? &epi : NULL,
                                    (const void *)(uintptr_t)q_in,
                                    (const float *)(uintptr_t)scale_in, openmp);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_int8_scratch_buffers(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(seqenc_int8_scratch_buffers());
}

static PyObject *py_int8_kernels(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(seqenc_int8_kernels());
}

/* peak(kind, iters, threads): giga-operations/s of the cores on one probe of peak.c (a
 * multiply-add counts 2). The caller checks the CPU has the probe's instructions. */
static PyObject *py_peak(PyObject *self, PyObject *args) {
    (void)self;
    int kind, threads;
    long long iters;
    if (!PyArg_ParseTuple(args, "iLi", &kind, &iters, &threads)) return NULL;
    if (kind < PEAK_FMA256 || kind > PEAK_AMX_INT8 || iters <= 0 || threads <= 0
        || (kind == PEAK_AMXBF16 && !seqenc_amx_usable())) {
        PyErr_SetString(PyExc_ValueError, "unknown probe (or AMX without the amx kernel set), "
                        "or iterations/threads not positive");
        return NULL;
    }
    double gops;
    Py_BEGIN_ALLOW_THREADS
    gops = seqenc_peak_gops(kind, iters, threads);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(gops);
}
#endif

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the kernels (AVX2 + FMA)."},
    {"best_isa", best_isa, METH_NOARGS, "The best kernel set: 0 AVX2, 1 AVX-512, 2 +BF16, 3 +AMX."},
#ifdef SEQENC_X86  /* elsewhere the module only says it is not supported */
    {"attention", attention, METH_VARARGS, "Self-attention over packed sequences."},
    {"bias_gelu", py_bias_gelu, METH_VARARGS, "x = gelu(x + bias), in place."},
    {"add_layernorm", py_add_layernorm, METH_VARARGS, "y = LayerNorm(y + bias + residual)."},
    {"gemm_bf16", py_gemm_bf16, METH_VARARGS, "C = A W^T: bf16 in, float32 out."},
    {"gemm_bf16_amx", py_gemm_bf16_amx, METH_VARARGS, "gemm_bf16 on AMX tiles."},
    {"gemm_f32", py_gemm_f32, METH_VARARGS, "C = A W^T in float32 (AVX-512), fused."},
    {"gemm_f32_packed", py_gemm_f32_packed, METH_VARARGS, "gemm_f32 on W packed by pack_f32."},
    {"pack_f32", py_pack_f32, METH_VARARGS, "W into gemm_f32's panels."},
    {"gemm_f32_avx2", py_gemm_f32_avx2, METH_VARARGS, "C = A W^T in float32 (AVX2), fused."},
    {"gemm_f32_avx2_packed", py_gemm_f32_avx2_packed, METH_VARARGS,
     "gemm_f32_avx2 on W packed by pack_f32_avx2."},
    {"pack_f32_avx2", py_pack_f32_avx2, METH_VARARGS, "W into gemm_f32_avx2's panels."},
    {"to_bf16", py_to_bf16, METH_VARARGS, "float32 rows -> bf16 rows (nearest even)."},
    {"peak", py_peak, METH_VARARGS, "Arithmetic peak of the cores for one instruction kind."},
    {"quantize_rows", py_quantize_rows, METH_VARARGS, "float32 rows -> int8, a scale per row."},
    {"dequantize_rows", py_dequantize_rows, METH_VARARGS, "int32 products -> float32, in place."},
    {"gemm_int8", py_gemm_int8, METH_VARARGS, "int8 GEMM, exact int32 sums (gemm_int8.c)."},
    {"quantize_int8", py_quantize_int8, METH_VARARGS, "float32 rows -> int8/uint8/int16 rows."},
    {"quant_gemm_int8", py_quant_gemm_int8, METH_VARARGS, "quantize_int8 + gemm_int8, one pass."},
    {"int8_scratch_buffers", py_int8_scratch_buffers, METH_NOARGS,
     "Threads holding an int8 scratch buffer now."},
    {"int8_kernels", py_int8_kernels, METH_NOARGS, "Bit i: int8 GEMM kernel i runs here."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
