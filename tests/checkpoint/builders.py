"""Tiny random checkpoints of every family, saved by transformers itself, with a tiny
tokenizer.json of the kind the family ships (WordPiece, byte-level BPE, Unigram)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

CORPUS = [
    "A man is playing a guitar.", "A woman is slicing an onion.", "The cat sat on the mat.",
    "Zoë's café serves crème brûlée, naïvely délicieux!", "東京は日本の首都です。",
    "emoji 😀🚀 and symbols ∑ ≠ ∞", "the quick brown fox jumps over the lazy dog",
    "Encoders read every token of the sentence at once.", "numbers 12345 and 3.14159",
]
TEXTS = [
    "A man is playing a guitar.",
    "",
    "Zoë's café serves crème brûlée — naïvely délicieux!",
    "東京は日本の首都です。",
    "the lazy dog " * 30,  # truncated at max_seq_length
    "cat",
]

_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
_ROBERTA_IDS = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2,
                    max_position_embeddings=66, type_vocab_size=1)

# family -> (tokenizer kind, config.json fields besides vocab_size)
SPECS: dict[str, tuple[str, dict]] = {
    "bert": ("wordpiece", {**_SIZES, "max_position_embeddings": 64, "type_vocab_size": 2}),
    "roberta": ("bpe", {**_SIZES, **_ROBERTA_IDS}),
    "xlm-roberta": ("unigram", {**_SIZES, **_ROBERTA_IDS}),
    "camembert": ("unigram", {**_SIZES, **_ROBERTA_IDS, "hidden_act": "gelu_new"}),
    "electra": ("wordpiece", {**_SIZES, "embedding_size": 16, "max_position_embeddings": 64}),
    "mpnet": ("wordpiece-roberta", {**_SIZES, **_ROBERTA_IDS, "layer_norm_eps": 1e-5}),
    "nomic_bert": ("wordpiece", {**_SIZES, "hidden_act": "silu", "max_position_embeddings": 64,
                                 "type_vocab_size": 2, "rope_parameters": {
                                     "rope_type": "default", "rope_theta": 1000.0}}),
    "gte": ("bpe", {**_SIZES, **_ROBERTA_IDS, "max_position_embeddings": 64,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 160000.0}}),
    "modernbert": ("bpe", {**{k: v for k, v in _SIZES.items() if not k.endswith(("act", "prob"))},
                           "hidden_activation": "gelu", "max_position_embeddings": 64,
                           "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                           "cls_token_id": 0, "sep_token_id": 2, "norm_bias": False,
                           "local_attention": 8, "global_attn_every_n_layers": 2,
                           "num_hidden_layers": 3}),
    "distilbert": ("wordpiece", {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64,
                                 "activation": "gelu", "max_position_embeddings": 64,
                                 "dropout": 0.1, "attention_dropout": 0.1}),
}


def build_tokenizer(kind: str) -> tuple[Tokenizer, dict]:
    """A tokenizer trained on CORPUS, with the family's special tokens and templates, and the
    special-token arguments for transformers' tokenizer class."""
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=_BERT_SPECIALS))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        names = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                     unk_token="[UNK]", mask_token="[MASK]")
    elif kind == "wordpiece-roberta":  # MPNet: WordPiece with RoBERTa's special tokens
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
            vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)])
        names = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                     pad_token="<pad>", unk_token="[UNK]", mask_token="<mask>")
    else:
        if kind == "bpe":
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=_ROBERTA_SPECIALS,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator(CORPUS, trainer)
            tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        else:  # unigram, sentencepiece-style (XLM-RoBERTa, CamemBERT)
            tok = Tokenizer(models.Unigram())
            tok.normalizer = normalizers.NFKC()
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(
                vocab_size=200, special_tokens=_ROBERTA_SPECIALS, unk_token="<unk>"))
            tok.post_processor = processors.TemplateProcessing(
                single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                special_tokens=[("<s>", 0), ("</s>", 2)])
        names = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                     pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    return tok, names


def build_checkpoint(directory: Path, family: str, seed: int = 0, pooling: dict | None = None
                     ) -> Path:
    """A random ``family`` model saved by transformers into ``directory``, with its tokenizer
    (tokenizer.json + tokenizer_config.json) and, with ``pooling``, sentence-transformers'
    module files (keys: mode, normalize, max_seq_length)."""
    import transformers

    kind, fields = SPECS[family]
    tokenizer, names = build_tokenizer(kind)
    model_type = family
    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=tokenizer.get_vocab_size(), **fields)
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config).eval()
    # Random init leaves LayerNorm at identity and biases at zero: randomise them so a
    # mix-up between any two tensors shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                                                model_max_length=48, **names)
    fast.save_pretrained(directory)
    if pooling is not None:
        write_sentence_modules(directory, **pooling)
    return directory


def write_sentence_modules(directory: Path, mode: str = "mean", normalize: bool = False,
                           max_seq_length: int = 40) -> None:
    (directory / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{m}": False for m in
             ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    flags[{"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
           "max": "pooling_mode_max_tokens"}[mode]] = True
    dim = json.loads((directory / "config.json").read_text()).get("hidden_size", 32)
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": dim, **flags}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
