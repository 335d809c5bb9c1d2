"""Whole training runs, from files to a saved model: what `seqenc train classify|mlm` and the
benchmarks call. Each takes a job description (where the data and model come from) and a
TrainConfig (how to optimise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seqenc.allocator import tune_memory
from seqenc.checkpoint import CheckpointError, config_to_bert
from seqenc.io.errors import InputError
from seqenc.model import SentenceEncoder, default_model_path
from seqenc.nn.config import EncoderConfig
from seqenc.nn.encoder import Encoder
from seqenc.tokenizer import TextTokenizer

from . import checkpointing as ckpt
from . import distributed as D
from .classifier import TextClassifier
from .config import ConfigError, TrainConfig, load_encoder_config
from .data import (
    LabelledTexts,
    encode_labels,
    infer_labels,
    read_corpus,
    read_labelled,
    split_indices,
)
from .mlm import MaskedLanguageModel, Masker, MaskingConfig, TextMaskedLM, find_special_token
from .tasks import ClassificationTask, MaskedLMTask
from .trainer import Trainer, TrainResult

# Sizes of the from-scratch encoder when no sizes.json is given: a 4-layer, 256-wide BERT.
SMALL = {"d_model": 256, "n_heads": 4, "n_layers": 4, "d_ff": 1024, "max_positions": 128}


@dataclass
class ClassifyJob:
    train: str  # labelled training file
    output: str
    dev: str | None = None  # labelled dev file
    dev_fraction: float = 0.0  # else hold out this share of train as dev
    split_seed: int = 0  # the held-out split; fixed apart from the training seed
    text_column: str | None = None  # default "sentence" (or column 0 without a header)
    label_column: str | None = None  # default "label" (or column 1 without a header)
    header: bool = True
    init: str | None = "default"  # pretrained sentence-encoder directory, or "default"
    config: str | None = None  # sizes.json for a from-scratch encoder (then init is ignored)
    tokenizer: str = "default"  # from scratch: default | train | path to tokenizer.json
    vocab_size: int = 8000  # for a trained WordPiece tokenizer
    max_length: int | None = None  # tokens per text; default 128 (capped by the model)
    metric: str = "accuracy"  # accuracy | macro_f1: picks the best checkpoint, early stops
    resume: bool = False


@dataclass
class MlmJob:
    corpus: str  # plain text, one example per line
    output: str
    dev: str | None = None  # held-out plain text
    dev_fraction: float = 0.05  # else hold out this share of the corpus lines
    split_seed: int = 0  # the held-out split; fixed apart from the training seed
    config: str | None = None  # sizes.json; default SMALL
    tokenizer: str = "train"  # train (WordPiece on the corpus) | path to tokenizer.json
    vocab_size: int = 8000
    max_length: int = 128
    mask_prob: float = 0.15
    resume: bool = False


def check_output(output: str | Path, resume: bool) -> None:
    """A fresh run needs an empty (or new) directory; a resumed one needs its checkpoint."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output {out} exists and is not a directory")
    if resume:
        if ckpt.find_checkpoint(out / "checkpoints" / "last") is None:
            raise FileNotFoundError(f"nothing to resume: {out / 'checkpoints' / 'last'} is missing")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--output {out} already holds files; pass --resume to continue "
                              "its run, or choose another directory")


def start_run(output: str | Path, resume: bool, cfg: TrainConfig, ctx: D.DistContext | None,
              echo: Callable[[str], None] | None) -> tuple[D.DistContext, Callable[[str], None]]:
    """What every recipe does first: the allocator settings for thousands of steps of varied
    shapes (seqenc/allocator.py); this process's place in the run (``ctx``, else one process
    on cfg.device); the output directory checked (``check_output``, main process); and where
    messages go (``echo``, else stdout)."""
    tune_memory()
    ctx = ctx or D.DistContext(device=D.resolve_device(cfg.device))
    if ctx.is_main:
        check_output(output, resume)
    return ctx, echo or (lambda m: print(m, flush=True))


def _tokenize(tokenizer: TextTokenizer, texts: list[str], what: str,
              echo=print) -> list[list[int]]:
    tokenized = tokenizer.encode(texts)
    if tokenized.truncated:
        echo(f"{what}: {len(tokenized.truncated)} of {len(texts)} texts cut at "
             f"{tokenizer.max_length} tokens")
    return tokenized.ids


def _load_tokenizer(spec: str, texts: list[str], vocab_size: int, ctx: D.DistContext):
    """default | train | PATH -> a tokenizers.Tokenizer (trained on the main process only)."""
    from tokenizers import Tokenizer

    from .wordpiece import train_wordpiece

    if spec == "train":
        trained = train_wordpiece(texts, vocab_size).to_str() if ctx.is_main else None
        return Tokenizer.from_str(D.broadcast_object(trained, ctx))
    path = default_model_path() / "tokenizer.json" if spec == "default" else Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise InputError("no such tokenizer file", file=str(path))
    return Tokenizer.from_file(str(path))


def tokenizer_directory(spec: str) -> Path | None:
    """Where a --tokenizer spec's special-tokens map would be (None for a trained one)."""
    if spec == "train":
        return None
    path = default_model_path() if spec == "default" else Path(spec)
    return path if path.is_dir() else path.parent


def _pad_id(tokenizer, directory: Path | None = None) -> int:
    """The pad token's id: as the special-tokens map names it, else [PAD] or <pad> (RoBERTa's
    is 1, not 0), else 0."""
    pad = find_special_token(tokenizer, "pad_token", ("[PAD]", "<pad>"), directory)
    return 0 if pad is None else tokenizer.token_to_id(pad)


def new_encoder(config_path: str | None, tokenizer_spec: str, texts: list[str],
                vocab_size: int, max_length: int | None, seed: int,
                ctx: D.DistContext) -> SentenceEncoder:
    """A randomly initialised BERT-shaped encoder (BERT's init, seeded) with its tokenizer."""
    tokenizer = _load_tokenizer(tokenizer_spec, texts, vocab_size, ctx)
    n_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    defaults = {"vocab_size": n_vocab,
                "pad_token_id": _pad_id(tokenizer, tokenizer_directory(tokenizer_spec))}
    if config_path is None:
        cfg = EncoderConfig(**{**defaults, **SMALL})
    else:
        cfg = load_encoder_config(config_path, **defaults)
    where = config_path or "the default sizes"
    if cfg.vocab_size < n_vocab:
        raise ConfigError(f"{where}: vocab_size {cfg.vocab_size} is smaller than the "
                          f"tokenizer's {n_vocab} tokens")
    try:
        config_to_bert(cfg)  # fail now, not at the first checkpoint
    except CheckpointError as e:
        raise ConfigError(f"{where}: {e}") from None
    torch.manual_seed(seed)
    encoder = Encoder(cfg).init_weights()
    length = min(max_length or 128, cfg.longest_sequence)
    return SentenceEncoder(encoder, TextTokenizer(tokenizer, length, cfg.pad_token_id),
                           pooling="mean", normalize=False)


def _with_max_length(encoder: SentenceEncoder, max_length: int | None) -> SentenceEncoder:
    limit = encoder.encoder.cfg.longest_sequence
    if max_length is not None and max_length > limit:
        raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
    length = max_length or min(128, encoder.max_seq_length)
    encoder.tokenizer = TextTokenizer(encoder.tokenizer.tokenizer, length,
                                      encoder.tokenizer.pad_id)
    return encoder


# -- classification ----------------------------------------------------------------------------


def read_classification_data(job: ClassifyJob) -> tuple[LabelledTexts, LabelledTexts | None]:
    train = read_labelled(job.train, job.text_column, job.label_column, header=job.header)
    dev = None
    if job.dev is not None:
        dev = read_labelled(job.dev, job.text_column, job.label_column, header=job.header)
    elif job.dev_fraction > 0:
        keep, held = split_indices(len(train), job.dev_fraction, job.split_seed)
        train, dev = train.subset(keep), train.subset(held)
    return train, dev


def build_classifier(job: ClassifyJob, labels: list[str], train_texts: list[str], seed: int,
                     ctx: D.DistContext) -> TextClassifier:
    if job.resume:
        classifier = TextClassifier.from_pretrained(Path(job.output) / "checkpoints" / "last")
        if classifier.labels != labels:
            raise InputError(f"the training data has labels {labels}; the checkpoint being "
                             f"resumed has {classifier.labels}", file=job.train)
        return classifier
    if job.config is not None:
        encoder = new_encoder(job.config, job.tokenizer, train_texts, job.vocab_size,
                              job.max_length, seed, ctx)
    else:
        encoder = _with_max_length(SentenceEncoder.from_pretrained(job.init), job.max_length)
    torch.manual_seed(seed)
    return TextClassifier.from_encoder(encoder, labels)


def train_classifier(job: ClassifyJob, cfg: TrainConfig, ctx: D.DistContext | None = None,
                     echo=None, progress: bool | None = None,
                     stop_after: int | None = None) -> TrainResult:
    """Read data, build (or resume) the classifier, train, export. Returns the TrainResult."""
    ctx, say = start_run(job.output, job.resume, cfg, ctx, echo)
    train, dev = read_classification_data(job)
    labels = infer_labels(train)
    train_y = encode_labels(train, labels)
    dev_y = encode_labels(dev, labels) if dev is not None else None
    classifier = build_classifier(job, labels, train.texts, cfg.seed, ctx)
    tok = classifier.tokenizer
    task = ClassificationTask(
        classifier, _tokenize(tok, train.texts, job.train, say), train_y,
        _tokenize(tok, dev.texts, dev.source, say) if dev is not None else None, dev_y,
        metric=job.metric)
    info = {"task": "classify", "job": asdict(job), "labels": labels, "n_train": len(train),
            "n_dev": len(dev) if dev is not None else 0}
    trainer = Trainer(task, cfg, job.output, ctx, run_info=info, echo=echo, progress=progress)
    return trainer.train(resume=job.resume, stop_after=stop_after)


# -- masked-LM pretraining -----------------------------------------------------------------------


def train_mlm(job: MlmJob, cfg: TrainConfig, ctx: D.DistContext | None = None, echo=None,
              progress: bool | None = None, stop_after: int | None = None) -> TrainResult:
    ctx, say = start_run(job.output, job.resume, cfg, ctx, echo)
    texts = read_corpus(job.corpus)
    if job.dev is not None:
        dev_texts = read_corpus(job.dev)
    elif job.dev_fraction > 0:
        keep, held = split_indices(len(texts), job.dev_fraction, job.split_seed)
        texts, dev_texts = [texts[i] for i in keep], [texts[i] for i in held]
    else:
        dev_texts = []
    if job.resume:
        mlm = TextMaskedLM.from_pretrained(Path(job.output) / "checkpoints" / "last")
    else:
        encoder = new_encoder(job.config, job.tokenizer, texts, job.vocab_size, job.max_length,
                              cfg.seed, ctx)
        torch.manual_seed(cfg.seed)
        model = MaskedLanguageModel(encoder.encoder).init_weights()
        mlm = TextMaskedLM(model, encoder.tokenizer)
    masker = Masker.for_tokenizer(
        mlm.tokenizer, mlm.model.encoder.cfg.vocab_size, MaskingConfig(mask_prob=job.mask_prob),
        Path(job.output) / "checkpoints" / "last" if job.resume
        else tokenizer_directory(job.tokenizer))
    task = MaskedLMTask(mlm, masker, _tokenize(mlm.tokenizer, texts, job.corpus, say),
                        _tokenize(mlm.tokenizer, dev_texts, job.dev or "dev", say)
                        if dev_texts else None, eval_seed=cfg.seed + 1)
    info = {"task": "mlm", "job": asdict(job), "n_train": len(texts), "n_dev": len(dev_texts),
            "vocab_size": mlm.model.encoder.cfg.vocab_size}
    trainer = Trainer(task, cfg, job.output, ctx, run_info=info, echo=echo, progress=progress)
    return trainer.train(resume=job.resume, stop_after=stop_after)
