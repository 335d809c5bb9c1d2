"""``python -m seqenc.server``: the same as ``seqenc serve``."""

from seqenc.server.cli import serve_command

if __name__ == "__main__":
    serve_command(prog_name="python -m seqenc.server")
