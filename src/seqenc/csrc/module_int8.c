/* seqenc._kernels' int8 functions (gemm_int8.c and its micro-kernels, avx512.c's
 * (de)quantisation): argument parsing and the checks the C side makes; module.c adds them to
 * the module. Pointers and layouts are checked by the Python caller (seqenc/int8.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "int8.h"
#include "module.h"
#include "simd512.h"

#ifdef SEQENC_X86
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

static PyObject *py_int8_kernels(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(seqenc_int8_kernels());
}

PyMethodDef seqenc_int8_methods[] = {
    {"quantize_rows", py_quantize_rows, METH_VARARGS, "float32 rows -> int8, a scale per row."},
    {"dequantize_rows", py_dequantize_rows, METH_VARARGS, "int32 products -> float32, in place."},
    {"gemm_int8", py_gemm_int8, METH_VARARGS, "int8 GEMM, exact int32 sums (gemm_int8.c)."},
    {"quantize_int8", py_quantize_int8, METH_VARARGS, "float32 rows -> int8/uint8/int16 rows."},
    {"quant_gemm_int8", py_quant_gemm_int8, METH_VARARGS, "quantize_int8 + gemm_int8, one pass."},
    {"int8_kernels", py_int8_kernels, METH_NOARGS, "Bit i: int8 GEMM kernel i runs here."},
    {NULL, NULL, 0, NULL},
};
#endif
