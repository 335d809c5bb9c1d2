"""seqenc.train: classification fine-tuning and masked-LM pretraining, on one process or many.

Layout, each layer knowing only the ones below it:

    config       TrainConfig (the optimisation recipe) and sizes.json -> EncoderConfig
    data         labelled tables and plain-text corpora in; deterministic batch plans out
    metrics      accuracy, macro-F1, per-class precision/recall/F1
    classifier   SequenceClassifier (encoder -> pooling -> dropout -> linear), TextClassifier
    mlm          BERT masking, the tied masked-LM head, MaskedLanguageModel
    wordpiece    WordPiece tokenizers trained with the `tokenizers` library
    tasks        what the trainer needs from classification and from MLM (dev metrics too)
    distributed  torchrun / DistributedDataParallel plumbing (gloo on CPU, nccl on GPU)
    checkpointing atomic checkpoint directories, the resumable trainer state (and whether a
                 saved one continues the run asked for), the export
    optim        AdamW parameter groups, warm-up + linear decay
    metrics_log  metrics.jsonl (train / eval / end events) and the loss/throughput meter
    console      what a run shows on stderr: the progress bar and its messages
    trainer      the loop: accumulation, clipping, bf16, evaluation, early stop, resume
    plots        learning curves (a matplotlib Figure on an Agg canvas, no pyplot)
    cli          `seqenc train classify|mlm`, `seqenc predict`, `seqenc evaluate`

Nothing here is imported by ``import seqenc.train``; import the submodules you need.
"""
