"""A missing optional extra is one line naming the pip install, and exit 5, everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_model import FakeModel
from seqenc import cli, exits
from seqenc.extras import EXTRAS, MissingExtra, extra_of, require

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(monkeypatch) -> list:
    loads: list = []

    def load(name, device="cpu"):
        loads.append(name)
        return FakeModel()

    monkeypatch.setattr(cli, "load_model", load)
    return loads


def block(monkeypatch, *modules: str) -> None:
    """Make ``import m`` fail as if the extra that installs ``m`` were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def assert_one_line(result, extra: str) -> None:
    assert result.exit_code == exits.EXIT_EXTRA, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert f"pip install 'seqenc[{extra}]'" in lines[0]
    assert "Traceback" not in result.output and "ModuleNotFoundError" not in result.output


def test_reading_parquet_without_pyarrow(tmp_path, fake, monkeypatch):
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1")
    block(monkeypatch, "pyarrow")
    result = run("encode", source, "-o", tmp_path / "o.npy")
    assert_one_line(result, "io")
    assert "reading parquet needs pyarrow" in result.stderr
    assert fake == [] and not (tmp_path / "o.npy").exists()


def test_writing_parquet_without_pyarrow(tmp_path, fake, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    block(monkeypatch, "pyarrow")
    result = run("encode", source, "-o", tmp_path / "o.parquet")
    assert_one_line(result, "io")
    assert "writing parquet needs pyarrow" in result.stderr
    assert fake == []  # refused before the slow model load
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_attention_without_matplotlib(tmp_path, fake, monkeypatch):
    block(monkeypatch, "matplotlib")
    result = run("attention", "some text", "-o", tmp_path / "a.png")
    assert_one_line(result, "viz")
    assert "seqenc attention needs matplotlib" in result.stderr
    assert fake == [] and not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("module", ["uvicorn", "fastapi", "prometheus_client"])
def test_serve_without_the_serve_extra(monkeypatch, module):
    block(monkeypatch, module)
    result = run("serve", "--port", "0")
    assert_one_line(result, "serve")
    assert f"seqenc serve needs {module}" in result.stderr


def test_python_m_seqenc_server_without_uvicorn():
    driver = (
        "import sys, runpy; sys.modules['uvicorn'] = None\n"
        "sys.argv = ['python -m seqenc.server', '--port', '0']\n"
        "runpy.run_module('seqenc.server', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == exits.EXIT_EXTRA, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: seqenc serve needs uvicorn, which is not installed: pip install 'seqenc[serve]'"
    ]


def test_require_names_the_extra(monkeypatch):
    assert require("json", "x") is sys.modules["json"]
    block(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtra, match=r"plotting needs matplotlib, which is not installed: "
                                           r"pip install 'seqenc\[viz\]'"):
        require("matplotlib.figure", "plotting")
    assert extra_of("pyarrow.parquet") == "io" and extra_of("uvicorn") == "serve"


def test_extras_match_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    for extra in EXTRAS:
        assert re.search(rf"^{extra} = \[", text, re.MULTILINE), extra


def test_every_exit_code_is_in_the_readme_and_help():
    codes = {v for k, v in vars(exits).items() if k.startswith("EXIT_") and isinstance(v, int)}
    readme = (ROOT / "README.md").read_text()
    table = set(map(int, re.findall(r"^\| (\d+) \|", readme, re.MULTILINE)))
    assert codes - {exits.EXIT_OK} <= table and table <= codes
    for code in codes:
        assert re.search(rf"^ +{code} +[a-z]", exits.EXIT_CODES, re.MULTILINE), code
    assert re.search(r"^ +5 +.*seqenc\[serve\]", exits.SERVE_EXIT_CODES, re.MULTILINE)


def test_training_without_matplotlib_stops_before_it_starts(tmp_path, monkeypatch):
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    block(monkeypatch, "matplotlib")
    result = run("train", "classify", "--train", data, "-o", tmp_path / "run", "--max-steps", 1)
    assert_one_line(result, "viz")
    assert "training (it draws learning_curves.png) needs matplotlib" in result.stderr
    assert not (tmp_path / "run").exists()
