"""Running the encoder in bfloat16 on hardware with and without bf16 arithmetic.

With native bf16 matmuls (AVX512-BF16/AMX CPUs, recent GPUs) the encoder is simply cast to
bf16. CPUs without them (AVX2-only x86 such as many AMD EPYC) have no bf16 dot product:
PyTorch emulates bf16 GEMMs at well under 1 GFLOP/s (fp32: ~90 per core here), and even bf16
element-wise ops cost more than fp32 ones, because each value is converted on the way in and
out. Measured on such a CPU with all-MiniLM-L6-v2, 1 thread: bf16 activations around fp32
GEMMs 97 sentences/s, fp32 130, bf16 weights with fp32 compute 132 (min cosine to fp32
0.99996). So there, ``bfloat16`` means bf16 weights and fp32 arithmetic: the weights are the
bf16 model's, the speed is fp32's, and the numbers are closer to fp32 than real bf16 compute.

On CPUs with AVX512-BF16 (our ``avx512bf16`` kernel set, and ``amx``) ``bf16_encoder`` goes
further: only the matmuls' inputs are bf16. Every nn.Linear becomes a Bf16Linear (weights packed
once as bf16, our GEMM: bf16 products, float32 sums and output; on AMX tiles with the amx
set) and everything else (residual stream, LayerNorm, attention, GELU) stays float32, on the
fused float32 path. Casting the whole encoder to bf16 rounds every GEMM output and the
residual stream too: on all-MiniLM-L6-v2 that cost min cosine 0.99987 to fp32 (200 sentences)
against the issue's bar of 0.9999; with bf16 only in the GEMM inputs it holds
(benchmarks/RESULTS.md), at the same speed (the GEMMs are the time).
"""

from __future__ import annotations

import copy
import functools
import logging
import operator
import weakref
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .nn import gemm_bf16
from .nn.linear import KernelLinear

log = logging.getLogger(__name__)

K = TypeVar("K")  # current_copy's cache keys


@functools.cache
def native_bf16_matmul(device_type: str = "cpu") -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


# Inference copies (encode's bf16 and int8 encoders) must be made again when the weights they
# were made from change. Reading the weights' values on every call would cost more than the
# batch; PyTorch's per-tensor version counters see every in-place write (optimizer steps,
# copy_, load_state_dict) and data_ptr sees a tensor's storage replaced (.to(), .double(),
# ``p.data = x``), for ~0.3 us a tensor. The record holds the storages it saw, so that a
# replaced one cannot be freed and its address handed to a later replacement (``p.data = x``
# twice would otherwise bring the recorded data_ptr back, with the same version: glibc reuses
# the block). Two things they miss are counted here by process-wide hooks, installed with the
# first copy: fused optimizer steps (seqenc's trainer uses fused AdamW), which write
# parameters without bumping their counters, and tensors or modules assigned anew (a walk over
# the modules finds them, but costs ~0.4 ms on MiniLM, so it runs only after some module
# registered one). What nothing cheap sees: in-place writes through ``tensor.data``
# (``p.data.copy_(x)``, ``p.data.normal_()``): ``.data`` is a new tensor with a version counter
# of its own each time, and the storage stays where it was; only reading the values would tell.
_fused_steps = 0  # fused optimizer steps taken in this process
_registrations = 0  # parameters, buffers and modules registered on any module
_hooks: list = []


def _count_fused_step(optimizer, args, kwargs) -> None:
    global _fused_steps
    if any(group.get("fused") for group in optimizer.param_groups):
        _fused_steps += 1


def _count_registration(module, name, value) -> None:
    global _registrations
    _registrations += 1


def _install_hooks() -> None:
    if not _hooks:
        from torch.nn.modules import module
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _hooks.extend([register_optimizer_step_post_hook(_count_fused_step),
                       module.register_module_parameter_registration_hook(_count_registration),
                       module.register_module_buffer_registration_hook(_count_registration),
                       module.register_module_module_registration_hook(_count_registration)])


def weights_version(tensors: Sequence[Tensor]) -> tuple[int, ...]:
    """Where each tensor lives, then how many times each has been written in place."""
    return (*map(Tensor.data_ptr, tensors), *map(_VERSION, tensors))


_VERSION = operator.attrgetter("_version")


@dataclass
class _Source:
    module: nn.Module  # what the copy was made from
    fused_steps: int  # _fused_steps then
    registrations: int  # _registrations when ``tensors`` was last read from the module
    tensors: list[Tensor]  # its parameters and buffers
    version: tuple[int, ...]  # weights_version(tensors) then
    storages: list[torch.UntypedStorage]  # the tensors' then, kept alive: no address reused


# inference copy -> what it was made from (weak: a copy dropped or deep-copied takes no record)
_sources: weakref.WeakKeyDictionary[nn.Module, _Source] = weakref.WeakKeyDictionary()


def made_from(inference: nn.Module, source: nn.Module) -> nn.Module:
    """Record that ``inference`` (a copy such as bf16_encoder's) was made from ``source``'s
    present weights, for ``is_current``. Returns ``inference``."""
    _install_hooks()
    tensors = [*source.parameters(), *source.buffers()]
    _sources[inference] = _Source(source, _fused_steps, _registrations, tensors,
                                  weights_version(tensors),
                                  [t.untyped_storage() for t in tensors])
    return inference


def is_current(inference: nn.Module, source: nn.Module) -> bool:
    """Whether ``inference`` was made from ``source``'s weights as they are now: no in-place
    write, move, storage replaced (``p.data = x`` included) or new tensor since, and no fused
    optimizer step in the process (which parameters one wrote is not looked up). In-place
    writes through ``tensor.data`` (``p.data.copy_(x)``, ``p.data.normal_()``) are not seen:
    they bypass the version counters, as they bypass autograd's checks; write under
    ``torch.no_grad()`` to the tensor itself (``p.copy_(x)``) or ``p.detach()`` instead. A
    module not marked by ``made_from`` (``source`` itself, or one a caller put in place) is
    current."""
    made = _sources.get(inference)
    if made is None:
        return True
    if made.module is not source or made.fused_steps != _fused_steps:
        return False
    if made.registrations != _registrations:  # a tensor may have been replaced: walk again
        made.tensors = [*source.parameters(), *source.buffers()]
        made.registrations = _registrations
    return weights_version(made.tensors) == made.version


def current_copy(copies: dict[K, nn.Module], key: K, source: nn.Module,
                 make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """``copies[key]`` while it ``is_current`` for ``source``, else ``make(source)``, recorded
    by ``made_from`` and kept in ``copies[key]``: how the models keep their bf16 and int8
    inference copies. Checked on every call (no values read): weights change in place."""
    kept = copies.get(key)
    if kept is not None and is_current(kept, source):
        return kept
    # the cache lets go of the stale copy before the new one is made: no two copies in memory
    # at once (unless a caller still holds the old one)
    del kept
    copies.pop(key, None)
    made = copies[key] = made_from(make(source), source)
    return made


@dataclass
class _TensorCopy:
    copy: Tensor
    fused_steps: int  # _fused_steps when it was made
    version: tuple[int, ...]  # weights_version((source,)) then
    storage: object  # the source's storage then, kept alive: its address is not reused


def current_tensor_copy(copies: MutableMapping[Tensor, Any], source: Tensor,
                        make: Callable[[Tensor], Tensor]) -> Tensor:
    """current_copy for one tensor (nn/gemm_f32.py's packed weights): ``copies[source]``'s
    copy while ``source`` has had no in-place write, storage replaced (``p.data = x``) or fused
    optimizer step since it was made, else ``make(source)``, kept in ``copies`` (a
    torch.utils.weak.WeakTensorKeyDictionary: a tensor dropped takes its copy along). The same
    checks and the same blind spot as ``is_current`` (in-place writes through ``.data``); a
    tensor assigned anew is a new key."""
    _install_hooks()
    version = weights_version((source,))
    kept = copies.get(source)
    if kept is not None and kept.version == version and kept.fused_steps == _fused_steps:
        return kept.copy
    del kept  # the stale copy goes before the new one is made
    copies.pop(source, None)
    made = make(source)
    copies[source] = _TensorCopy(made, _fused_steps, version, source.untyped_storage())
    return made


def round_to_bf16(module: nn.Module) -> nn.Module:
    """Round every parameter to the nearest bf16 value, keeping fp32 storage. In place."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return module


def cast_encoder(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """An inference copy of ``encoder`` for ``dtype`` (the original is left untouched)."""
    clone = copy.deepcopy(encoder).eval()
    device = next(encoder.parameters()).device
    if dtype != torch.bfloat16 or native_bf16_matmul(device.type):
        return clone.to(dtype)
    log.info("no bf16 matmul instructions on this %s: bfloat16 = bf16 weights, fp32 compute",
             device.type)
    return round_to_bf16(clone)


class Bf16Linear(KernelLinear):
    """y = x W^T + b with W and x rounded to bf16 and everything else float32: the products of
    bf16 values are exact in float32 and summed in float32 (nn/gemm_bf16.py), so the only
    rounding is of the inputs. Float32 in, float32 out; CPU inference only (no gradients)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("packed", gemm_bf16.pack_weight(linear.weight.detach().float()))
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @staticmethod
    def takes(linear: nn.Module) -> bool:
        """Whether ``linear`` is an nn.Linear of widths our GEMM runs here."""
        return (isinstance(linear, nn.Linear)
                and gemm_bf16.can_gemm(linear.in_features, linear.out_features))

    def takes_bf16_rows(self) -> bool:
        """Whether matmul runs our GEMM here, so bf16 rows go in as they are (the fused layer
        then has its kernels write bf16 rows instead of converting float32 ones)."""
        return self.packed.device.type == "cpu" and gemm_bf16.can_gemm(
            self.in_features, self.out_features)

    def matmul(self, x: Tensor) -> Tensor:
        """x W^T without the bias: (N, K) float32 or bf16 -> (N, M) float32."""
        if x.device.type == "cpu" and self.takes_bf16_rows():
            if x.dtype != torch.bfloat16:
                x = x.float()
            return gemm_bf16.gemm(x.contiguous(), self.packed, self.out_features)
        x = x.float().contiguous()
        # our kernels turned off (SEQENC_KERNELS=0, tests): the same products in PyTorch
        w = gemm_bf16.unpack_weight(self.packed, self.out_features, self.in_features)
        return x.to(torch.bfloat16).float() @ w.float().t()

    def matmul_gelu(self, x: Tensor, bias: Tensor) -> Tensor:
        """gelu(x W^T + bias) rounded to bf16, the GELU inside our GEMM's epilogue (CPU, where
        takes_bf16_rows()): (N, K) float32 or bf16 -> (N, M) bf16."""
        return gemm_bf16.gemm(x.contiguous(), self.packed, self.out_features,
                              gelu_bias=bias.float().contiguous())

    def matmul_norm(self, x: Tensor, norm: gemm_bf16.Norm,
                    copy_bf16: Tensor | None = None) -> Tensor:
        """LayerNorm(x W^T + bias + residual) * gamma + beta for norm = (bias, residual, gamma,
        beta, eps), the LayerNorm inside our GEMM's epilogue (CPU, where takes_bf16_rows() and
        gemm_bf16.can_norm()): (N, K) float32 or bf16 -> (N, M) float32; ``copy_bf16`` (N, M)
        bf16 also gets the result rounded to bf16."""
        return gemm_bf16.gemm(x.contiguous(), self.packed, self.out_features, norm=norm,
                              copy_bf16=copy_bf16)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 GEMM"


def bf16_encoder(encoder: nn.Module) -> nn.Module:
    """The inference copy ``encode(dtype="bfloat16")`` runs (the original is left untouched):
    where our bf16 GEMM runs (a CPU model, the avx512bf16 kernel set), a float32 copy whose
    nn.Linear layers are Bf16Linear (bf16 only in the GEMMs' inputs, see the module doc; a
    linear of widths the GEMM does not take stays float32); elsewhere
    ``cast_encoder(encoder, torch.bfloat16)``."""
    device = next(encoder.parameters()).device
    linears = [name for name, m in encoder.named_modules() if Bf16Linear.takes(m)]
    if device.type != "cpu" or not linears:
        return cast_encoder(encoder, torch.bfloat16)
    clone = copy.deepcopy(encoder).eval().float()
    for name in linears:
        parent_name, _, child = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child, Bf16Linear(getattr(parent, child)))
    return clone  # (a later .float() or .to(dtype) would cast the packed bf16 weights)
