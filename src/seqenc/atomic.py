"""Atomic output files: write beside the target, rename over it only when complete.

Every file seqenc writes (vectors, attention maps, predictions, plots, training logs and
exports) goes through here, so after an error, Ctrl-C or a crash either the previous file or
the complete new one is in place, never a half-written one. Rules kept in this one place:

- the temporary file sits in the target's directory (``os.replace`` is then a rename on one
  filesystem) and keeps the target's suffix (matplotlib picks the format from it);
- it is created with the usual umask permissions, and a file it replaces keeps its mode
  (a read-only 0444 output stays 0444);
- errors name the user's path, never the temporary one.

(Checkpoint *directories* are swapped in by ``seqenc.train.checkpointing.write_atomic_dir``,
which adds crash recovery of the swap itself.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` as raised, but about ``path`` (the user's) rather than the temporary file."""
    renamed = type(error)(error.errno, error.strerror or str(error), str(path))
    return renamed if error.errno is not None else error


class AtomicFile:
    """A temporary path beside ``path`` that becomes ``path`` on commit, or vanishes on discard."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        name = f".{self.path.name}.{secrets.token_hex(4)}.tmp{self.path.suffix}"
        self.tmp = self.path.with_name(name)
        try:
            # "x" rather than mkstemp, so the final file gets umask permissions, not 0600
            open(self.tmp, "xb").close()
        except OSError as e:
            raise _naming(e, self.path) from None

    def commit(self) -> None:
        try:
            try:
                os.chmod(self.tmp, stat.S_IMODE(os.stat(self.path).st_mode))
            except FileNotFoundError:
                pass  # a new file: umask permissions
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise _naming(e, self.path) from None

    def discard(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` only if the block succeeds."""
    target = AtomicFile(path)
    try:
        yield target.tmp
    except BaseException:
        target.discard()
        raise
    target.commit()


def write_text(path: str | Path, text: str) -> None:
    """``Path(path).write_text(text)`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def copy_file(source: str | Path, target: str | Path) -> None:
    """``shutil.copyfile(source, target)``, atomically."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
