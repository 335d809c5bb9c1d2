/* seqenc._kernels' float32 and bf16 GEMM functions (gemm_f32.c, gemm_f32_avx2.c, gemm_bf16.c,
 * gemm_bf16_amx.c): argument parsing and the checks the C side makes; module.c adds them to the
 * module. Pointers are data_ptr()s of tensors the Python caller (seqenc/nn) has checked. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "int8.h"
#include "module.h"
#include "simd512.h"

#ifdef SEQENC_X86
/* gemm_bf16(a_ptr, packed_ptr, c_ptr, n, m, k, ldc, threads[, gelu_bias_ptr]): C = A W^T, A
 * (n, k) bf16, W packed by seqenc/precision.py (gemm_bf16.c says how), C float32; with
 * gelu_bias_ptr (float32 (m,)) C = gelu(A W^T + bias) in bf16. to_bf16(x_ptr, y_ptr, n, k,
 * threads): float32 rows -> bf16 rows. AVX512-BF16 only; shapes and the CPU checked by the
 * caller (seqenc/nn/gemm_bf16.py) beyond the conditions tested here. */
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
                     (const float *)(uintptr_t)gelu_bias, NULL);
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
                                  m, k, ldc, threads, (const float *)(uintptr_t)gelu_bias,
                                  NULL);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_SetString(PyExc_ValueError, "AMX does not run here (seqenc_amx_usable)");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* gemm_bf16_norm(a_ptr, packed_ptr, c_ptr, n, m, k, ldc, threads, bias_ptr, residual_ptr,
 * gamma_ptr, beta_ptr, eps, copy16_ptr) and gemm_bf16_amx_norm(...): gemm_bf16's C = A W^T
 * (float32), then C = LayerNorm(C + bias + residual) * gamma + beta on each task's whole rows
 * (avx512.c's arithmetic; ldc == m, residual (n, m) float32), and with copy16_ptr (0: none) the
 * result rounded to bf16 there too. */
static PyObject *bf16_norm_call(PyObject *args, int amx) {
    unsigned long long a, packed, c, bias, residual, gamma, beta, copy16;
    long long n, m, k, ldc;
    float eps;
    int threads, status = 0;
    if (!PyArg_ParseTuple(args, "KKKLLLLiKKKKfK", &a, &packed, &c, &n, &m, &k, &ldc, &threads,
                          &bias, &residual, &gamma, &beta, &eps, &copy16))
        return NULL;
    if (k % (amx ? 32 : 2) || m % 16 || ldc != m || n < 0 || threads <= 0 || !bias
        || (n && !residual) || !gamma || !beta) { /* no rows: an empty residual's pointer is 0 */
        PyErr_SetString(PyExc_ValueError, "gemm_bf16*_norm needs k even (AMX: % 32), "
                        "m % 16 == 0, ldc == m and the LayerNorm's vectors and residual");
        return NULL;
    }
    const F32Epilogue norm = {NULL, (const float *)(uintptr_t)bias,
                              (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                              (const float *)(uintptr_t)beta, eps, (uint16_t *)(uintptr_t)copy16};
    const uint16_t *a16 = (const uint16_t *)(uintptr_t)a, *w = (const uint16_t *)(uintptr_t)packed;
    Py_BEGIN_ALLOW_THREADS
    if (amx) status = seqenc_gemm_bf16_amx(a16, w, (float *)(uintptr_t)c, n, m, k, ldc, threads,
                                           NULL, &norm);
    else seqenc_gemm_bf16(a16, w, (float *)(uintptr_t)c, n, m, k, ldc, threads, NULL, &norm);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_SetString(PyExc_ValueError, "AMX does not run here (seqenc_amx_usable)");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_gemm_bf16_norm(PyObject *self, PyObject *args) {
    (void)self;
    return bf16_norm_call(args, 0);
}

static PyObject *py_gemm_bf16_amx_norm(PyObject *self, PyObject *args) {
    (void)self;
    return bf16_norm_call(args, 1);
}

/* gemm_f32(a_ptr, w_ptr, c_ptr, n, m, k, ldc, threads[, gelu_bias_ptr, bias_ptr, residual_ptr,
 * gamma_ptr, beta_ptr, eps]): C = A W^T in float32, W (m, k) float32 rows, then gelu(C +
 * gelu_bias), or with gamma_ptr LayerNorm(C + bias + residual) * gamma + beta (ldc == m); 0
 * pointers: none (simd.h's F32Epilogue). gemm_f32 runs 512-bit FMAs (AVX-512 only) with
 * avx512.c's epilogue arithmetic, gemm_f32_avx2 AVX2 FMAs; their _packed forms take w_ptr as
 * pack_f32's / pack_f32_avx2's panels of W. Layouts checked by seqenc/nn (gemm_f32.py). */
typedef int (*F32Gemm)(const float *a, const float *w, int w_packed, float *c, int64_t n,
                       int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi);

static PyObject *f32_gemm_call(PyObject *args, const char *name, F32Gemm gemm, int w_packed) {
    unsigned long long a, w, c, gelu_bias = 0, bias = 0, residual = 0, gamma = 0, beta = 0;
    long long n, m, k, ldc;
    float eps = 0.0f;
    int threads, status;
    if (!PyArg_ParseTuple(args, "KKKLLLLi|KKKKKf", &a, &w, &c, &n, &m, &k, &ldc, &threads,
                          &gelu_bias, &bias, &residual, &gamma, &beta, &eps))
        return NULL;
    if (k <= 0 || m % 16 || ldc < m || n < 0 || threads <= 0 || (gamma && (gelu_bias
            || ldc != m || !bias || !residual || !beta))) {
        PyErr_Format(PyExc_ValueError, "%s needs k > 0, m %% 16 == 0, ldc >= m; LayerNorm also "
                     "bias, residual, beta, ldc == m and no GELU", name);
        return NULL;
    }
    const F32Epilogue epi = {(const float *)(uintptr_t)gelu_bias, (const float *)(uintptr_t)bias,
                             (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                             (const float *)(uintptr_t)beta, eps};
    Py_BEGIN_ALLOW_THREADS
    status = gemm((const float *)(uintptr_t)a, (const float *)(uintptr_t)w, w_packed,
                  (float *)(uintptr_t)c, n, m, k, ldc, threads, gelu_bias || gamma ? &epi : NULL);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_gemm_f32(PyObject *self, PyObject *args) {
    (void)self;
    return f32_gemm_call(args, "gemm_f32", seqenc_gemm_f32, 0);
}

static PyObject *py_gemm_f32_packed(PyObject *self, PyObject *args) {
    (void)self;
    return f32_gemm_call(args, "gemm_f32", seqenc_gemm_f32, 1);
}

static PyObject *py_gemm_f32_avx2(PyObject *self, PyObject *args) {
    (void)self;
    return f32_gemm_call(args, "gemm_f32_avx2", seqenc_gemm_f32_avx2, 0);
}

static PyObject *py_gemm_f32_avx2_packed(PyObject *self, PyObject *args) {
    (void)self;
    return f32_gemm_call(args, "gemm_f32_avx2", seqenc_gemm_f32_avx2, 1);
}

/* pack_f32(w_ptr, out_ptr, m, k) and pack_f32_avx2(...): W (m, k) float32 rows -> the m k
 * floats of the panels gemm_f32_packed (gemm_f32_avx2_packed) reads; out_ptr aligned to the
 * kernel's vector (64 or 32 bytes), m % 16 == 0. */
static PyObject *pack_call(PyObject *args, const char *name,
                           void (*pack)(const float *, float *, int64_t, int64_t), int align) {
    unsigned long long w, out;
    long long m, k;
    if (!PyArg_ParseTuple(args, "KKLL", &w, &out, &m, &k)) return NULL;
    if (k <= 0 || m <= 0 || m % 16 || out % (unsigned long long)align) {
        PyErr_Format(PyExc_ValueError, "%s needs k > 0, m %% 16 == 0 and a %d-byte aligned "
                     "output", name, align);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pack((const float *)(uintptr_t)w, (float *)(uintptr_t)out, m, k);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_pack_f32(PyObject *self, PyObject *args) {
    (void)self;
    return pack_call(args, "pack_f32", seqenc_pack_f32, 64);
}

static PyObject *py_pack_f32_avx2(PyObject *self, PyObject *args) {
    (void)self;
    return pack_call(args, "pack_f32_avx2", seqenc_pack_f32_avx2, 32);
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

PyMethodDef seqenc_gemm_methods[] = {
    {"gemm_bf16", py_gemm_bf16, METH_VARARGS, "C = A W^T: bf16 in, float32 out."},
    {"gemm_bf16_amx", py_gemm_bf16_amx, METH_VARARGS, "gemm_bf16 on AMX tiles."},
    {"gemm_bf16_norm", py_gemm_bf16_norm, METH_VARARGS, "gemm_bf16, then add + LayerNorm."},
    {"gemm_bf16_amx_norm", py_gemm_bf16_amx_norm, METH_VARARGS,
     "gemm_bf16_amx, then add + LayerNorm."},
    {"gemm_f32", py_gemm_f32, METH_VARARGS, "C = A W^T in float32 (AVX-512), fused."},
    {"gemm_f32_packed", py_gemm_f32_packed, METH_VARARGS, "gemm_f32 on W packed by pack_f32."},
    {"pack_f32", py_pack_f32, METH_VARARGS, "W into gemm_f32's panels."},
    {"gemm_f32_avx2", py_gemm_f32_avx2, METH_VARARGS, "C = A W^T in float32 (AVX2), fused."},
    {"gemm_f32_avx2_packed", py_gemm_f32_avx2_packed, METH_VARARGS,
     "gemm_f32_avx2 on W packed by pack_f32_avx2."},
    {"pack_f32_avx2", py_pack_f32_avx2, METH_VARARGS, "W into gemm_f32_avx2's panels."},
    {"to_bf16", py_to_bf16, METH_VARARGS, "float32 rows -> bf16 rows (nearest even)."},
    {NULL, NULL, 0, NULL},
};
#endif
