"""The directory layout: Hugging Face files plus sentence-transformers' module files.

    config.json                    the family and sizes (families.py)
    model.safetensors | pytorch_model.bin
    tokenizer.json [tokenizer_config.json]
    modules.json                   sentence-transformers: Transformer, Pooling[, Normalize]
    1_Pooling/config.json          the pooling mode
    sentence_bert_config.json      max_seq_length
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..nn.config import EncoderConfig
from ..nn.encoder import Encoder
from ..pooling import pooling_from_config
from .families import CheckpointError, Family, detect_family, family_for_config
from .weights import from_state_dict, read_json, read_weights, to_state_dict, write_json

_POOLING_FLAGS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                  "max": "pooling_mode_max_tokens",
                  "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}


@dataclass
class Checkpoint:
    """What a model directory holds, read and checked; the encoder is fully loaded."""

    encoder: Encoder  # in eval mode
    family: Family
    tokenizer_file: Path
    pooling: str  # the checkpoint's own pooling (mean when it names none)
    normalize: bool  # a Normalize module follows pooling
    max_length: int  # tokens, [CLS]/<s> and [SEP]/</s> included


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and check everything in ``path``; raises CheckpointError naming what is wrong."""
    config = read_json(path / "config.json")  # an object, or CheckpointError naming the file
    family = detect_family(config)
    try:
        cfg = family.read_config(config)
    except CheckpointError as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    pooling, normalize, max_length = read_sentence_modules(path)
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.exists():
        raise CheckpointError(f"{path} has no tokenizer.json")
    if max_length is None:
        tok_cfg_file = path / "tokenizer_config.json"
        tok_max = read_json(tok_cfg_file).get("model_max_length") if tok_cfg_file.exists() else None
        max_length = tok_max or cfg.longest_sequence
    max_length = min(int(max_length), cfg.longest_sequence)
    encoder = Encoder(cfg)
    state = from_state_dict(read_weights(path), family, encoder.state_dict())
    encoder.load_state_dict(state, strict=True)
    return Checkpoint(encoder.eval(), family, tokenizer_file, pooling, normalize, max_length)


def read_sentence_modules(path: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length or None) from sentence-transformers' files, with
    mean pooling and no normalisation for a plain Hugging Face directory."""
    pooling, normalize, max_length = "mean", False, None
    modules_file = path / "modules.json"
    if modules_file.exists():
        for module in read_json(modules_file, expect=list):
            kind = module.get("type", "").rsplit(".", 1)[-1]
            if kind == "Pooling":
                pooling_file = path / module["path"] / "config.json"
                try:
                    pooling = pooling_from_config(read_json(pooling_file))
                except ValueError as e:
                    raise CheckpointError(f"{pooling_file}: {e}") from None
            elif kind == "Normalize":
                normalize = True
    st_config = path / "sentence_bert_config.json"
    if st_config.exists():
        max_length = read_json(st_config).get("max_seq_length")
    return pooling, normalize, max_length


def write_checkpoint(
    out: Path,
    encoder: Encoder,
    tokenizer_json: str,
    pooling: str,
    normalize: bool,
    max_seq_length: int,
    family: str | None = None,
) -> Path:
    """Write the layout ``read_checkpoint`` (and sentence-transformers) reads back, in
    ``family``'s names when it can hold the encoder, else the first family that can."""
    from safetensors.torch import save_file

    cfg: EncoderConfig = encoder.cfg
    chosen = family_for_config(cfg, family)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    save_file(to_state_dict(state, chosen), str(out / "model.safetensors"))
    write_json(out / "config.json", chosen.write_config(cfg))
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    write_json(out / "modules.json", modules)
    write_json(out / "sentence_bert_config.json",
               {"max_seq_length": max_seq_length, "do_lower_case": False})
    pooling_cfg: dict = {"word_embedding_dimension": cfg.d_model}
    pooling_cfg.update({flag: mode == pooling for mode, flag in _POOLING_FLAGS.items()})
    write_json(out / "1_Pooling" / "config.json", pooling_cfg)
    return out
