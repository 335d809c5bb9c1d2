"""``python -m seqenc.train classify|mlm ...``: the entry point for torchrun."""

from seqenc.train.cli import train_group

if __name__ == "__main__":
    train_group(prog_name="python -m seqenc.train")
