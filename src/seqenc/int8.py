"""int8 linear layers for CPU inference that keep quality: int8 weights with one scale per
output channel, int8 activations with one scale per token (row), exact int32 accumulation,
float32 out.

The GEMM is ours (csrc/gemm_int8.c, ``GEMM``) where the C kernels run: AMX-INT8 tiles (amx,
on vnni512's operands and packed weights), AVX512-VNNI, AVX-VNNI, or on AVX2-only CPUs
vpmaddubsw on 7-bit weights (avx2-u7s7, avx2-u8s7; int8_layout.LEVELS) or int16 pairs
(vpmaddwd, avx2); the weights are packed once for it (int8_layout.py). Every
kernel's int32 sums are exact (tests/test_int8_gemm.py), so kernels of the same levels give the
same vectors on every CPU. Without our kernels (SEQENC_KERNELS=0, no C extension) PyTorch's
torch._int_mm (oneDNN) multiplies on CPUs with VNNI; elsewhere int8 is refused (oneDNN's AVX2
path saturates, and a float64 product would be slower than float32).

Why per token: all-MiniLM-L6-v2 has outlier channels and outlier tokens; one scale for a whole
batch (PyTorch's dynamic quantisation) lets one token flatten everyone else's values (mean cosine
to fp32 0.94-0.98, benchmarks/RESULTS.md). Optional SmoothQuant-style smoothing moves part of an
outlier channel's range from the activations into the weights: x W^T = (x / s)(W s)^T with
s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha) from calibration activations.

``quantize_encoder`` (int8_calibration.py) swaps the encoder's nn.Linear layers for Int8Linear
in place, each on ``layer_gemm``'s kernel; which layers (``skip``) and alpha are the caller's
choice, measured in benchmarks/int8_quality.py. ``int8_encoder`` is what
``encode(dtype="int8")`` runs: every linear layer, per-token scales, smoothing calibrated on
random tokens (no user data), which holds the quality bar (benchmarks/RESULTS.md). Its layers
keep the fused path (nn/kernels.py): int8 GEMM with the dequantisation in its epilogue, then
our float32 epilogues.

This module is one int8 linear layer and the choices behind it (which kernel, which schedule);
the rest of int8 has a module per concept: int8_layout.py (each kernel's operands and packed
weights), int8_layer.py (a whole post-norm layer inside the GEMMs' tasks), int8_gemm.py (bare
exact int32 products, for tests and the bench probe), int8_calibration.py (the int8 copy of an
encoder).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from .int8_layout import (  # noqa: F401 (LEVELS, gemm_fits, pack_int8: int8's API too)
    _GEMMS,
    _PACKING,
    _SHIFT,
    LEVELS,
    gemm_fits,
    pack_int8,
    quantize_weights,
)
from .nn.linear import KernelLinear


def _state_layout(gemm: str | None) -> tuple | None:
    """What an Int8Linear's state depends on: the packing, the weights' levels and the shift
    (kernels equal in all three read each other's state; None: torch._int_mm's)."""
    if gemm is None:
        return None
    return _PACKING[gemm], LEVELS[gemm][1], _SHIFT.get(_GEMMS[gemm][1])


def quantize_rows(x: Tensor, levels: int = 127) -> tuple[Tensor, Tensor]:
    """(N, K) float -> (N, K) int8 within +-levels and (N,) float32 scales:
    x ~ q * scale[:, None]."""
    scale = x.abs().amax(dim=1).clamp(min=1e-12) / float(levels)
    q = torch.round(x / scale[:, None]).clamp_(-levels, levels).to(torch.int8)
    return q, scale.float()


class Int8Linear(KernelLinear):
    """y = x W^T + b with W int8 per output channel and x int8 per row (token). ``gemm``: the
    kernel of csrc/gemm_int8.c to pack for and run ("amx", "vnni512", "avx2", ...), None for
    torch._int_mm, default ``GEMM`` (the best that runs here) where the shape suits it.

    Its state is its kernel's: ``packed``/``corr`` in ``gemm``'s layout and shift, weights
    quantised to its levels. seqenc never saves it (each process makes its int8 copy from the
    float32 weights), but a caller may: the state names its kernel (``get_extra_state``), and
    ``load_state_dict`` refuses one made for a kernel of another layout before it writes
    anything (amx, vnni512 and vnni256 share one; avx2-u8s7, avx2-u7s7 and avx2 each have
    their own, and the first two take another's shapes: loaded, it computed wrong values)."""

    def __init__(self, linear: nn.Linear, smooth: Tensor | None = None,
                 gemm: str | None = "auto"):
        super().__init__()
        w = linear.weight.detach().float()  # (M, K)
        if smooth is not None:
            w = w * smooth[None, :]
        self.register_buffer("inv_smooth",
                             None if smooth is None else (1.0 / smooth.float()).contiguous())
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        shape = tuple(w.shape)
        if gemm == "auto":
            gemm = GEMM if gemm_fits(*shape) else None
        elif gemm is not None and (gemm not in runnable_gemms() or not gemm_fits(*shape)):
            raise ValueError(f"int8 GEMM {gemm!r} does not run here for {shape} "
                             f"weights (runs: {runnable_gemms()}, shapes M % 16 == K % 8 == 0)")
        self.gemm = gemm
        # the kernel's weight levels (7-bit for avx2-u*); the other paths compute with them too
        q, w_scale = quantize_weights(w, LEVELS[gemm][1] if gemm else 127)
        self.register_buffer("weight_t", q.t().contiguous())  # (K, M): _int_mm's layout
        self.register_buffer("weight_scale", w_scale)  # (M,)
        packed, corr = pack_int8(q, gemm) if gemm else (None, None)
        self.register_buffer("packed", packed)  # q in the layout of gemm_int8.c's kernel
        self.register_buffer("corr", corr)  # (M,) int32, what the VNNI/AMX kernels' shift adds

    def get_extra_state(self) -> dict[str, str | None]:
        """Saved with the buffers: the kernel they are laid out for."""
        return {"gemm": self.gemm}

    def set_extra_state(self, state: dict[str, str | None]) -> None:
        """Nothing to set: the kernel was checked before the buffers were written
        (_load_from_state_dict)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # nn.Module's hook for a subclass's own loading rules (BatchNorm's too); it writes the
        # buffers before set_extra_state runs, so the kernel is checked here, first
        saved = state_dict.get(prefix + "_extra_state")
        if saved is not None and _state_layout(saved.get("gemm")) != _state_layout(self.gemm):
            raise ValueError(
                f"{prefix.rstrip('.') or 'Int8Linear'}: this int8 state was made for the "
                f"{saved.get('gemm') or 'onednn'} kernel, and this layer runs "
                f"{self.gemm or 'onednn'}, whose packed weights differ; make the int8 copy "
                "from the float32 model where it runs (int8_encoder)")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def matmul(self, x: Tensor) -> Tensor:
        """x W^T without the bias: (N, K) float -> (N, M) float32."""
        x = x.float().contiguous()
        if self.gemm is not None:
            return self._own_gemm(x)
        fast = _fast_kernels() and x.shape[1] % 16 == 0 and self.out_features % 16 == 0
        if not fast:
            if self.inv_smooth is not None:
                x = x * self.inv_smooth
            q, scale = quantize_rows(x)
            acc = _int_mm(q, self.weight_t)  # (N, M) int32
            return acc.float().mul_(scale[:, None]).mul_(self.weight_scale)
        from .nn.kernels import _kernels

        N, K = x.shape
        threads = torch.get_num_threads()
        q, scale = torch.empty(N, K, dtype=torch.int8), torch.empty(N)
        smooth = self.inv_smooth  # applied by the kernel as it reads x: no smoothed copy
        _kernels.quantize_rows(x.data_ptr(), q.data_ptr(), scale.data_ptr(), N, K, threads,
                               0 if smooth is None else smooth.contiguous().data_ptr())
        acc = _int_mm(q, self.weight_t).contiguous()
        _kernels.dequantize_rows(acc.data_ptr(), scale.data_ptr(), self.weight_scale.data_ptr(),
                                 N, self.out_features, threads)
        return acc.view(torch.float32)  # converted in place

    def _own_gemm(self, x: Tensor | tuple[Tensor, Tensor], gelu_bias: Tensor | None = None,
                  norm: tuple[Tensor, Tensor, Tensor, Tensor, float] | None = None,
                  feeds: Int8Linear | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Quantise x (smoothing applied as it is read) and run gemm_int8.c's kernel, which
        dequantises in its epilogue: no int32 intermediate, and (SCHEDULE "fused") no int8
        copy of x in memory either. gelu_bias, or norm = (bias, residual, gamma, beta, eps):
        the post-norm layer's next step in the same tasks (see int8_layer.py). With ``feeds``
        (and gelu_bias) the result rows come back quantised for that layer, (q, scale), and x
        may be such a pair."""
        from .nn.kernels import _kernels

        quantized = isinstance(x, tuple)
        N, K = (x[0] if quantized else x).shape
        if K != self.in_features:
            raise ValueError(f"expected rows of {self.in_features} values, got {K}")
        kind, M, threads = _GEMMS[self.gemm][0], self.out_features, torch.get_num_threads()
        corr = 0 if self.corr is None else self.corr.data_ptr()
        how = schedule()
        if how.startswith("fused") or quantized or feeds is not None:
            smooth = 0 if self.inv_smooth is None else self.inv_smooth.data_ptr()
            out = torch.empty(0 if feeds is not None else N, M)
            epilogue: tuple = (0, 0, 0, 0, 0, 0.0)
            if gelu_bias is not None:
                epilogue = (gelu_bias.data_ptr(), 0, 0, 0, 0, 0.0)
            elif norm is not None:
                epilogue = (0, *(t.data_ptr() for t in norm[:4]), norm[4])
            q_out = scale_out = None
            if feeds is not None:
                # uint8 q + 128 for VNNI and AMX, int16 for avx2's: what `feeds` reads
                q_out, scale_out = torch.empty(N, M, dtype=_GEMMS[feeds.gemm][2]), torch.empty(N)
                mul = feeds.inv_smooth
                epilogue += (q_out.data_ptr(), scale_out.data_ptr(),
                             0 if mul is None else mul.data_ptr())
            else:
                epilogue += (0, 0, 0)
            epilogue += (x[0].data_ptr(), x[1].data_ptr()) if quantized else (0, 0)
            # q_out in the format `feeds` reads (its kernel may differ: int8.EIGHT_BIT_INPUTS)
            q_format = -1 if feeds is None else _GEMMS[feeds.gemm][1]
            _kernels.quant_gemm_int8(kind, 0 if quantized else x.data_ptr(), smooth,
                                     self.packed.data_ptr(), corr, self.weight_scale.data_ptr(),
                                     out.data_ptr(), N, M, K, M, threads, *epilogue,
                                     how != "fused-tasks", q_format)
            return (q_out, scale_out) if feeds is not None else out
        out = torch.empty(N, M)
        q, scale = quantize_rows_kernel(x, self.gemm, self.inv_smooth)
        _kernels.gemm_int8(kind, q.data_ptr(), self.packed.data_ptr(), corr, scale.data_ptr(),
                           self.weight_scale.data_ptr(), out.data_ptr(), N, M, K, M, threads,
                           how == "openmp")
        return out


# the kernels whose epilogues have 16 lanes (avx512.c's arithmetic); the others have 8
WIDE_GEMMS = ("amx", "vnni512")


def gelu_for_int8(w) -> bool:
    """Whether the FFN's separate bias_gelu_ runs the int8 GELU (nn.kernels.GELU_INT8_ERROR):
    its rows are quantised for an Int8Linear down projection. It does on 16 lanes, as the fused
    epilogues of WIDE_GEMMS do (both schedules give the same bits, and every kernel of this CPU
    the same vectors); the 8-lane kernels and epilogues keep the erf form."""
    return isinstance(w.down_weight, Int8Linear)


def _fast_kernels() -> bool:
    """seqenc's AVX-512 (de)quantisation kernels run here (else PyTorch ops do the same)."""
    from .nn import kernels

    return kernels.ENABLED and kernels.ISAS.index(kernels.ISA) >= 1


def _has_vnni() -> bool:
    """Whether the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8) as oneDNN would use it:
    ONEDNN_MAX_CPU_ISA=AVX2 (the guide's AVX2-only simulation) or a lower cap says no. Two uses:
    our vnni512/vnni256 GEMMs run only where it says yes (runnable_gemms; AVX2-only CPUs get
    our int16-pair kernel), and without our kernels int8 is refused where it says no
    (check_int8): oneDNN's int8 GEMM then multiplies with vpmaddubsw, whose int16 pair sums
    saturate for large activations (results off by far more than the quantisation error)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in ("SSE41", "AVX", "AVX2", "AVX512_CORE"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return True  # not Linux: trust oneDNN
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


_VNNI = _has_vnni()

def runnable_gemms() -> list[str]:
    """Our int8 GEMMs that run here, best first: the C kernels on (SEQENC_KERNELS, and
    SEQENC_ISA=avx2 leaves out vnni512 and amx, whose epilogues are AVX-512's) and the CPU has
    the instructions (VNNI as _VNNI sees it; amx also AMX-INT8 and Linux's leave to use it)."""
    from .nn import kernels

    if not kernels.ENABLED or not hasattr(kernels._kernels, "gemm_int8"):
        return []
    bits = kernels._kernels.int8_kernels()
    runs = [name for name, (kind, _, _) in _GEMMS.items() if bits >> kind & 1]
    if not _VNNI:
        runs = [name for name in runs if not name.startswith("vnni") and name != "amx"]
    if kernels.ISA == "avx2":
        runs = [name for name in runs if name not in WIDE_GEMMS]
    return runs


def _choose_gemm() -> str | None:
    """``GEMM``: SEQENC_INT8_GEMM (a name of _GEMMS, or "onednn" for torch._int_mm) if it runs
    here, else the best of ours that does, else None (torch._int_mm)."""
    runs = runnable_gemms()
    wanted = os.environ.get("SEQENC_INT8_GEMM", "")
    if wanted == "onednn":
        return None
    if wanted in runs:
        return wanted
    return runs[0] if runs else None


GEMM = _choose_gemm()
# The layers that keep 8-bit activations where GEMM takes 7-bit ones (avx2-u7s7): the FFN down
# projection reads GELU outputs, whose long tail 63 levels resolve worst (mean cosine to fp32
# 0.9957 with every layer on 7 bits, 0.9969 with these on 8; benchmarks/RESULTS.md). They run
# avx2-u8s7 instead: the same 7-bit weights, 8-bit activations, a third slower.
EIGHT_BIT_INPUTS = (".down",)


def layer_gemm(name: str) -> str | None:
    """The kernel quantize_encoder gives the linear layer ``name``: GEMM, but avx2-u8s7 for the
    layers of EIGHT_BIT_INPUTS where GEMM is avx2-u7s7."""
    if GEMM == "avx2-u7s7" and name.endswith(EIGHT_BIT_INPUTS):
        return "avx2-u8s7"
    return GEMM


# How a layer's GEMM runs on our kernels (SEQENC_INT8_SCHEDULE, to compare them):
#   "fused": quantisation, GEMM and (int8_layer.post_norm_layer) the layer's next step in one
#     parallel loop on OpenMP's threads (PyTorch's: warm from the ops around it);
#   "fused-tasks": the same loop on csrc/tasks.c's threads, whose loops end when the tiles are
#     done rather than at a barrier (measured: no gain with a busy core, and ~25% slower on a
#     quiet one for single-batch calls, its helpers contending with OpenMP's spinning threads);
#   "tasks": a loop for quantisation and one for the GEMM, on tasks.c; "openmp": the same two
#     loops on OpenMP's threads.
#   "auto" (the default): "fused" where a call has one thread (encode's batches run side by
#     side, one thread each), else "openmp" (one batch on several threads: "fused" splits it
#     into row blocks that each stream every weight, which measured ~20% slower there).
SCHEDULES = ("auto", "fused", "fused-tasks", "tasks", "openmp")
SCHEDULE = os.environ.get("SEQENC_INT8_SCHEDULE", "auto")
if SCHEDULE not in SCHEDULES:
    raise ValueError(f"SEQENC_INT8_SCHEDULE must be one of {', '.join(SCHEDULES)}, "
                     f"got {SCHEDULE!r}")


def schedule() -> str:
    """SCHEDULE, with "auto" resolved for this call's thread count."""
    if SCHEDULE != "auto":
        return SCHEDULE
    return "fused" if torch.get_num_threads() == 1 else "openmp"


def quantize_rows_kernel(x: Tensor, gemm: str, mul: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """quantize_rows(x * mul) by the kernel that feeds ``gemm`` (with LEVELS[gemm][0] in place
    of 127), stored as that GEMM reads it: int16 (avx2), uint8 q + 128 (VNNI, avx2-u8s7) or
    uint8 q + 64 (avx2-u7s7); and the (N,) float32 scales. x (N, K) float32
    contiguous, mul (K,) float32 contiguous (the inverse smoothing factors) or None."""
    from .nn.kernels import _kernels

    N, K = x.shape
    _, fmt, dtype = _GEMMS[gemm]
    q, scale = torch.empty(N, K, dtype=dtype), torch.empty(N)
    _kernels.quantize_int8(x.data_ptr(), 0 if mul is None else mul.data_ptr(), q.data_ptr(),
                           scale.data_ptr(), N, K, torch.get_num_threads(), fmt,
                           schedule() == "openmp")
    return q, scale


def check_int8() -> None:
    """Refuse int8, in one line that says why, where nothing exact and fast multiplies it:
    neither our kernels nor oneDNN with VNNI."""
    if GEMM is None and not _VNNI:
        from .nn import kernels

        raise ValueError("dtype int8 needs seqenc's C kernels (an x86-64 CPU with AVX2) or a "
                         f"CPU with VNNI, and here run {kernels.describe()}, without VNNI: "
                         "int8 would be slower than float32. Use float32 (or bfloat16)")


def _int_mm(a: Tensor, b: Tensor) -> Tensor:
    """int8 (N, K) @ (K, M) -> int32 (torch._int_mm). It wants N > 16 on some builds: pad
    small N. Without VNNI the products are summed in float64 instead (exact, slow: int8_encoder
    refuses a CPU where every layer would come here, but a layer whose shape our GEMMs do not
    take, or an Int8Linear made with gemm=None, still computes)."""
    if not _VNNI:
        return (a.double() @ b.double()).to(torch.int32)
    n = a.shape[0]
    if n > 16:
        return torch._int_mm(a, b)
    padded = torch.zeros(17, a.shape[1], dtype=torch.int8)
    padded[:n] = a
    return torch._int_mm(padded, b)[:n]


# the int8 copy of a model (its own module; int8's API as before)
from .int8_calibration import (  # noqa: E402, F401
    CALIBRATION_SEQUENCES,
    SMOOTHED,
    calibrate,
    encoder_gemms,
    int8_encoder,
    quantize_encoder,
    random_batches,
)
