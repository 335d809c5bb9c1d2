/* seqenc._kernels: our CPU kernels for inference, called from seqenc/nn/kernels.py.
 *
 *   attention.c    self-attention over sequences packed back to back (no gathers, no mask)
 *   elementwise.c  bias + GELU, and bias + residual + LayerNorm, each in one pass
 *   simd.h         the AVX2 helpers they share
 *
 * The matmuls stay PyTorch's (MKL); these take the elementwise work around them. Work runs in
 * parallel on the OpenMP runtime PyTorch itself loaded (same soname), so the threads are
 * PyTorch's and do not fight its GEMM threads for the cores. AVX2 + FMA only, chosen at run
 * time (`supported()`); elsewhere seqenc uses PyTorch's kernels. Built by setup.py as an
 * optional extension: without a C compiler seqenc still installs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "simd.h"

static PyObject *supported(PyObject *self, PyObject *args) {
    (void)self; (void)args;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    Py_RETURN_FALSE;
#endif
}

#ifdef SEQENC_X86
static int valid_width(long long n, int threads) {
    if (n % 8 == 0 && threads > 0) return 1;
    PyErr_SetString(PyExc_ValueError, "width must be a multiple of 8");
    return 0;
}

/* attention(qkv_ptr, q_bias_ptr, v_bias_ptr, out_ptr, starts_ptr, lengths_ptr, n_seq, n_rows,
 *           n_heads, head_dim, scale, threads): pointers are data_ptr()s of contiguous CPU
 * tensors, checked by the Python caller (seqenc/nn/kernels.py). The projection comes without
 * biases: the key bias adds the same q.b_k to every score of a row, which softmax cancels, and
 * the value bias comes out unchanged (weights sum to 1), so it is added to the output. */
static PyObject *attention(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long qkv, q_bias, v_bias, out, starts, lengths;
    long long n_seq, n_rows, n_heads, hd;
    float scale;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLfi", &qkv, &q_bias, &v_bias, &out, &starts, &lengths,
                          &n_seq, &n_rows, &n_heads, &hd, &scale, &threads))
        return NULL;
    if (hd <= 0 || hd % 8 != 0 || n_heads <= 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "head_dim must be a positive multiple of 8");
        return NULL;
    }
    Problem pr = {(const float *)(uintptr_t)qkv, (const float *)(uintptr_t)q_bias,
                  (const float *)(uintptr_t)v_bias, (float *)(uintptr_t)out, n_heads, hd,
                  n_heads * hd, scale};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = seqenc_varlen_attention(&pr, (const int64_t *)(uintptr_t)starts,
                              (const int64_t *)(uintptr_t)lengths, n_seq, n_rows, threads);
    Py_END_ALLOW_THREADS
    if (status == -2) {
        PyErr_Format(PyExc_ValueError, "sequence spans run outside the %lld packed rows",
                     n_rows);
        return NULL;
    }
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* bias_gelu(x_ptr, bias_ptr, rows, n, threads): x = gelu(x + bias) in place (erf form). */
static PyObject *py_bias_gelu(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, bias;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKLLi", &x, &bias, &rows, &n, &threads)) return NULL;
    if (!valid_width(n, threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    seqenc_bias_gelu((float *)(uintptr_t)x, (const float *)(uintptr_t)bias, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* add_layernorm(y_ptr, bias_ptr, residual_ptr, gamma_ptr, beta_ptr, eps, rows, n, threads):
 * y = LayerNorm(y + bias + residual) in place. */
static PyObject *py_add_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long y, bias, residual, gamma, beta;
    float eps;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKfLLi", &y, &bias, &residual, &gamma, &beta, &eps, &rows,
                          &n, &threads))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    seqenc_add_layernorm((float *)(uintptr_t)y, (const float *)(uintptr_t)bias,
                  (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                  (const float *)(uintptr_t)beta, eps, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
#endif

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the kernels (AVX2 + FMA)."},
#ifdef SEQENC_X86  /* elsewhere the module only says it is not supported */
    {"attention", attention, METH_VARARGS, "Self-attention over packed sequences."},
    {"bias_gelu", py_bias_gelu, METH_VARARGS, "x = gelu(x + bias), in place."},
    {"add_layernorm", py_add_layernorm, METH_VARARGS, "y = LayerNorm(y + bias + residual)."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
