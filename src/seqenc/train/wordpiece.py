"""BERT-style WordPiece tokenizers trained with the `tokenizers` library.

Lower-cased BERT normalisation and pre-tokenisation, ``[CLS] text [SEP]`` templates, and the
special tokens [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

Training a vocabulary is not bit-for-bit repeatable: the `tokenizers` trainer breaks ties
between equally frequent merges in hash-map order (huggingface/tokenizers#1794), so two runs
can differ in a few rare entries. Training runs save the tokenizer they used; pass that
tokenizer.json back for an exact repeat.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8000, *, lowercase: bool = True,
                    min_frequency: int = 2) -> Tokenizer:
    """A WordPiece vocabulary of at most ``vocab_size`` entries learnt from ``texts``."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                               special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer
