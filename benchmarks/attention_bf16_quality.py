"""What AMX-BF16 attention would cost in quality, before building it: the bf16 and int8
encodes with attention emulated in PyTorch as tiles would compute it (q times the scale, k, v
and the softmax numerators rounded to bf16; float32 products' sums, max, exp and 1 / sum), min
and mean cosine of each text's vector to the float32 encode's, beside the same encodes with our
float32 attention kernel. Issue 14's floors: bf16 min >= 0.9999, int8 mean >= 0.995.

    python benchmarks/attention_bf16_quality.py [--texts 2000] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from seqenc.model import SentenceEncoder
from seqenc.nn import kernels

import numpy as np
import torch
from harness import cosines, read_texts
from torch import Tensor


def bf16_tile_attention(qkv: Tensor, starts: Tensor, lengths: Tensor, n_heads: int,
                        bias: Tensor | None = None, out_dtype: torch.dtype | None = None,
                        isa: str | None = None) -> Tensor:
    """kernels.varlen_attention's contract, computed as AMX-BF16 tiles would."""
    qkv = qkv.float() + (0 if bias is None else bias.float())
    N, three_d = qkv.shape
    D = three_d // 3
    hd = D // n_heads
    out = torch.empty(N, D)
    for s, L in zip(starts.tolist(), lengths.tolist(), strict=True):
        q, k, v = qkv[s:s + L].view(L, 3, n_heads, hd).permute(1, 2, 0, 3)  # (H, L, hd) each
        q = (q / math.sqrt(hd)).bfloat16().float()
        scores = q @ k.bfloat16().float().transpose(1, 2)  # (H, L, L), float32 sums
        e = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = e.bfloat16().float()  # what the P x V tile multiplies
        o = (weights @ v.bfloat16().float()) / e.sum(-1, keepdim=True)
        out[s:s + L] = o.transpose(0, 1).reshape(L, D)
    return out.to(out_dtype or qkv.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    texts = read_texts(args.texts)
    model = SentenceEncoder.from_pretrained()
    reference = np.asarray(model.encode(texts))
    ours = kernels.varlen_attention
    result = {}
    for dtype in ("bfloat16", "int8"):
        for name, attention in (("float32 kernel", ours), ("bf16 tiles (emulated)",
                                                           bf16_tile_attention)):
            kernels.varlen_attention = attention
            try:
                c = cosines(np.asarray(model.encode(texts, dtype=dtype)), reference)
            finally:
                kernels.varlen_attention = ours
            result[f"{dtype}, attention {name}"] = {"min": float(c.min()),
                                                    "mean": float(c.mean())}
            print(f"{dtype:9s} attention {name:22s} cosine to fp32: min {c.min():.6f} "
                  f"mean {c.mean():.6f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "cosine_to_fp32": result},
                                        indent=1))


if __name__ == "__main__":
    main()
