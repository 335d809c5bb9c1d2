"""The engines `seqenc bench` races against, each behind one signature: texts -> (N, D) vectors.

- sentence-transformers (its torch path, fp32 or bf16);
- ONNX Runtime on the checkpoint exported to ONNX and fused by ``onnxruntime.transformers``'
  BERT optimizer (EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization), as
  optimum / fastembed / TEI's ORT backend run it;
- OpenVINO on the same export (unfused: OpenVINO fuses on its own), at f32 and at its default
  inference precision for the CPU at hand (bf16 where the CPU has bf16 instructions).

Every peer gets the same checkpoint, texts, rows per batch (sorted by length, longest first, as
sentence-transformers batches) and thread count as seqenc. ONNX Runtime and OpenVINO are fed by
seqenc's tokenizer (the checkpoint's tokenizer.json, the same `tokenizers` library
sentence-transformers runs) and pooled like the checkpoint (mean over real tokens, then L2
normalised if it says so). Needs the ``bench`` extra: ``pip install 'seqenc[bench]'``.

Streams: seqenc's encode runs as many batches at once as it has threads, one thread each
(threads.run_batches). The like-for-like setting of ONNX Runtime and OpenVINO is the same:
``streams`` batches in flight, each on one thread (ONNX Runtime: one session, one intra-op
thread, ``streams`` concurrent runs; OpenVINO: NUM_STREAMS with one infer request per stream,
its THROUGHPUT setup). The bench races both those and the one-batch-at-a-time setting (all
threads on one batch, OpenVINO's LATENCY hint), so whichever a user would pick is in the race.
"""

from __future__ import annotations

import queue
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .extras import require
from .model import SentenceEncoder

Encode = Callable[[Sequence[str]], np.ndarray]
PEERS = ("sentence-transformers", "onnxruntime", "openvino")


@dataclass
class Peer:
    name: str  # e.g. "onnxruntime fp32", "openvino bf16 (default)"
    encode: Encode
    precision: str  # what the peer computes in: "fp32", "bf16", ...


def _need(module: str):
    return require(module, f"seqenc bench's {module.split('.')[0]} peer")


def sentence_transformers_peer(model: SentenceEncoder, dtype: torch.dtype, batch_size: int,
                               device: str = "cpu") -> Peer:
    st = _need("sentence_transformers")
    peer = st.SentenceTransformer(str(model.path), device=device).to(dtype)
    peer.max_seq_length = model.max_seq_length
    label = "bf16" if dtype == torch.bfloat16 else "fp32"

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(peer.encode(list(texts), batch_size=batch_size, convert_to_numpy=True),
                          dtype=np.float32)

    return Peer(f"sentence-transformers {label}", encode, label)


def export_onnx(model: SentenceEncoder, directory: Path) -> Path:
    """The checkpoint as transformers' BertModel -> ONNX (opset 17, dynamic batch and length).

    Exported with eager attention: the SDPA graph hides the pattern ORT's optimizer fuses."""
    transformers = _need("transformers")
    hf = transformers.AutoModel.from_pretrained(str(model.path), attn_implementation="eager")
    hf.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    path = directory / "model.onnx"
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(LastHidden(hf), (ids, ids), str(path), opset_version=17, dynamo=False,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "last_hidden_state": axes})
    return path


def _batched(model: SentenceEncoder, batch_size: int,
             run: Callable[[np.ndarray, np.ndarray], np.ndarray], streams: int = 1) -> Encode:
    """texts -> vectors around ``run(input_ids, mask) -> (B, T, D)``: seqenc's tokenizer,
    sentence-transformers' batching (longest first), the checkpoint's pooling. With
    ``streams`` > 1 that many batches run at once (``run`` must take concurrent calls)."""
    if model.pooling != "mean":
        raise ValueError(f"the ONNX peers pool by mean only; this checkpoint pools by "
                         f"{model.pooling!r}")

    def encode(texts: Sequence[str]) -> np.ndarray:
        ids = model.tokenizer.encode(list(texts)).ids
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(ids), model.dimension), dtype=np.float32)

        def one_batch(lo: int) -> None:  # writes its own rows of ``out`` only
            idx = order[lo:lo + batch_size]
            batch = model.tokenizer.pad([ids[i] for i in idx])
            mask = batch.attention_mask.numpy()
            hidden = run(batch.input_ids.numpy(), mask.astype(np.int64))  # (B, T, D)
            keep = mask[..., None].astype(np.float32)
            vectors = (hidden * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1e-9)
            if model.normalize:
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[idx] = vectors

        starts = range(0, len(ids), batch_size)
        if streams == 1:
            for lo in starts:
                one_batch(lo)
        else:
            with ThreadPoolExecutor(streams) as pool:
                list(pool.map(one_batch, starts))  # list(): raises a batch's exception
        return out

    return encode


def _streams_label(streams: int) -> str:
    return "" if streams == 1 else f", {streams} streams"


def onnxruntime_peer(model: SentenceEncoder, onnx_path: Path, batch_size: int,
                     threads: int, streams: int = 1) -> Peer:
    """``streams`` > 1: that many concurrent runs of one session, one intra-op thread each
    (``threads`` is then ignored: the streams are the threads)."""
    ort = _need("onnxruntime")
    optimizer = _need("onnxruntime.transformers.optimizer")
    cfg = model.encoder.cfg
    fused = optimizer.optimize_model(str(onnx_path), model_type="bert", num_heads=cfg.n_heads,
                                     hidden_size=cfg.d_model)
    fused_path = onnx_path.with_name("model.fused.onnx")
    fused.save_model_to_file(str(fused_path))
    stats = fused.get_fused_operator_statistics()
    if not stats.get("Attention"):
        raise RuntimeError(f"ORT's optimizer fused no attention ({stats}): not the graph "
                           "ORT users run")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if streams == 1 else 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(fused_path), options, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    return Peer("onnxruntime fp32" + (f" ({streams} streams)" if streams > 1 else ""),
                _batched(model, batch_size, run, streams), "fp32")


def openvino_peer(model: SentenceEncoder, onnx_path: Path, batch_size: int, threads: int,
                  precision: str | None, streams: int = 1) -> Peer:
    """``precision`` "f32", or None for OpenVINO's default on this CPU (reported).
    ``streams`` 1: the LATENCY hint, all ``threads`` on each batch; more: the THROUGHPUT hint
    with that many streams sharing ``threads``, one infer request per stream."""
    ov = _need("openvino")
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
              "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16, f16
    used = str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint).lower()
    used = {"f32": "fp32", "float32": "fp32"}.get(used, used)
    requests: queue.Queue = queue.Queue()  # one per stream: a request runs one batch at a time
    for _ in range(streams):
        requests.put(compiled.create_infer_request())
    output = compiled.outputs[0]

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        request = requests.get()
        try:  # copied out: the request's output buffer is reused by its next batch
            return request.infer({"input_ids": ids, "attention_mask": mask})[output].copy()
        finally:
            requests.put(request)

    setting = ("" if precision else "default") + _streams_label(streams)
    label = f"openvino {used}" + (f" ({setting.lstrip(', ')})" if setting else "")
    return Peer(label, _batched(model, batch_size, run, streams), used)


def build_peers(model: SentenceEncoder, dtype: str, names: Sequence[str], batch_size: int,
                threads: int, device: str = "cpu", workdir: Path | None = None,
                streams: Sequence[int] = (1,)) -> list[Peer]:
    """The peers for one seqenc mode: fp32 races sentence-transformers fp32, ORT fp32 and
    OpenVINO f32; bf16 races sentence-transformers bf16 and OpenVINO's default precision; int8
    races OpenVINO's default precision (the fastest peer; sentence-transformers' torch path has
    no int8 mode of its own). ORT and OpenVINO run once per entry of ``streams`` (batches in
    flight, see the module doc)."""
    unknown = set(names) - set(PEERS)
    if unknown:
        raise ValueError(f"unknown peer(s) {sorted(unknown)}; choose from {', '.join(PEERS)}")
    peers = []
    if "sentence-transformers" in names and dtype != "int8":
        torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        peers.append(sentence_transformers_peer(model, torch_dtype, batch_size, device))
    if device != "cpu" or not {"onnxruntime", "openvino"} & set(names):
        return peers
    workdir = workdir or Path(tempfile.mkdtemp(prefix="seqenc-peers-"))
    onnx_path = workdir / "model.onnx"
    if not onnx_path.exists():
        onnx_path = export_onnx(model, workdir)
    for n in streams:
        if "onnxruntime" in names and dtype == "float32":
            peers.append(onnxruntime_peer(model, onnx_path, batch_size, threads, n))
        if "openvino" in names:
            peers.append(openvino_peer(model, onnx_path, batch_size, threads,
                                       "f32" if dtype == "float32" else None, n))
    return peers
