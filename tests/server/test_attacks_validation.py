"""Issue 17's attacks on validation, replayed against a real server subprocess: lone
surrogates are a 422 naming the input, never a 500; the work of refusing a body is bounded by
its size (JSON values, inputs, first bad item), large bodies are parsed in a helper process;
echoed values are capped; blank inputs are refused. Waits are bounded; nothing asserts on
speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipapp
from pathlib import Path

import pytest

from .attacks_support import (
    BOUND,
    PAYLOAD,
    peak_rss_mib,
    post_raw,
    reset_peak_rss,
)
from .support import ServerProcess, error_body, wait_for

# ---- 1. lone surrogates: a 4xx naming the input, never a 500 ----------------------------------


SURROGATE_CASES = [
    ("/embed", b'{"inputs": ["ok", "a%sb"]}', "inputs[1]"),
    ("/v1/embeddings", b'{"input": ["ok", "a%sb"]}', "input[1]"),
    ("/v1/embeddings", b'{"input": "a%sb"}', "input"),
    ("/similarity", b'{"inputs": {"source_sentence": "ok", "sentences": ["x", "a%sb"]}}',
     "inputs.sentences[1]"),
    ("/similarity", b'{"inputs": {"source_sentence": "a%sb", "sentences": ["x"]}}',
     "inputs.source_sentence"),
    ("/tokenize", b'{"inputs": ["ok", "a%sb"]}', "inputs[1]"),
]


@pytest.mark.parametrize("surrogate", [b"\\ud800", b"\\udfff", b"\xed\xa0\x80"],
                         ids=["escape-high", "escape-low", "raw-bytes"])
@pytest.mark.parametrize("route, template, where", SURROGATE_CASES)
def test_lone_surrogates_are_422_naming_the_input(target, anon, route, template, where,
                                                  surrogate):
    response = post_raw(anon, route, template % surrogate)
    assert response.status_code == 422, response.text
    body = error_body(response)
    assert body["error_type"] == "validation"
    assert body["error"].startswith(f"{where} is not valid Unicode: a lone surrogate U+D")
    assert "Traceback" not in target.output()


# ---- 2. validation work bounded by the body ---------------------------------------------------


@pytest.mark.parametrize("route, body, fragment", [
    # More JSON values than any valid request holds: refused by the helper process that
    # parses large bodies, before the event loop sees them (bodies.py).
    ("/v1/embeddings", {"input": [{}] * 66_000}, "JSON values; no valid request"),
    ("/v1/embeddings", {"input": [[]] * 66_000}, "JSON values; no valid request"),
    ("/v1/embeddings", {"input": [[1, 2]] * 20_000 + [["a"]]}, "JSON values; no valid request"),
    ("/embed", {"inputs": ["a"] + [1] * 60_000}, "JSON values; no valid request"),
    ("/similarity", {"inputs": {"source_sentence": "s", "sentences": [None] * 39_000}},
     "JSON values; no valid request"),
    # Fewer values: the shape checks stop at the first bad item, and a list longer than
    # max_client_batch_size is refused before it is walked.
    ("/v1/embeddings", {"input": [{}] * 4000}, "input[0] is an object"),
    ("/v1/embeddings", {"input": [[1, 2]] * 2000 + [["a"]]}, "2001 inputs in one request"),
    ("/embed", {"inputs": ["a"] * 3000}, "3000 inputs in one request"),
    ("/embed", {"inputs": ["a" * 40] * 4000}, "4000 inputs in one request"),  # via the helper
    ("/embed", {"inputs": ["a", 1]}, "inputs[1] is an integer"),
])
def test_invalid_items_cost_one_short_error(target, anon, route, body, fragment):
    """Before: pydantic built an error per item per union member (0.3 MB of {}: 3.2 s and
    +416 MB). Now a body is refused for its size in JSON values, its number of inputs or its
    first bad item, each in one short error."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) <= PAYLOAD
    reset_peak_rss(target.proc.pid)
    before = peak_rss_mib(target.proc.pid)
    response = post_raw(anon, route, raw)
    grown = peak_rss_mib(target.proc.pid) - before
    assert response.status_code == 422, response.text[:300]
    message = error_body(response)["error"]
    assert fragment in message and len(message) < 300
    assert grown < 64, f"peak RSS grew {grown:.0f} MiB for a {len(raw)}-byte body"


def json_helpers(server: ServerProcess) -> list[int]:
    """The server's children started by multiprocessing's spawn: the JSON helper is the only
    one (its resource tracker is started differently). Children are listed per thread, and
    the helper is started from a worker thread."""
    found = []
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        try:
            found += [int(pid) for pid in (task / "children").read_text().split()
                      if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        except OSError:  # the thread or the child ended meanwhile
            pass
    return found


def test_large_bodies_are_parsed_in_a_helper_process_restarted_if_it_dies(target, anon):
    # json.loads holds the GIL: a 2 MB body parsed on the event loop stalled every client
    # (issue 17). Large bodies go to a child process; valid ones come back whole.
    texts = [f"{i} " + "word " * 1000 for i in range(4)]  # 20 KB: past the inline limit
    first = anon.post("/tokenize", json={"inputs": texts, "add_special_tokens": False})
    assert first.status_code == 200, first.text[:300]
    helpers = json_helpers(target)
    assert len(helpers) == 1
    os.kill(helpers[0], signal.SIGKILL)
    wait_for(lambda: json_helpers(target) == [], "the helper to be reaped", BOUND)
    statuses = [post_raw(anon, "/tokenize", json.dumps({"inputs": texts}).encode()).status_code
                for _ in range(2)]
    assert statuses in ([503, 200], [200, 200]), statuses  # 503 only if it saw the death
    again = anon.post("/tokenize", json={"inputs": texts, "add_special_tokens": False})
    assert again.json() == first.json()
    assert len(json_helpers(target)) == 1


def test_large_bodies_parse_where_seqenc_is_not_importable_by_a_new_interpreter(tmp_path):
    # A zipapp or frozen install: seqenc is importable only through what the launcher put on
    # sys.path. The helper started as `python -m seqenc.server.json_helper` could not import
    # it there, and every body over 16 KiB got a 503. Here the launcher is a real zipapp that
    # puts the source tree first on sys.path, and a decoy `seqenc` on PYTHONPATH stands in
    # for "not installed" (it hides this checkout's editable install from a new interpreter).
    source = Path(__file__).resolve().parents[2] / "src"
    decoy = tmp_path / "decoy" / "seqenc"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("seqenc is not installed here")\n')
    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text(
        f"import sys\nsys.path.insert(0, {str(source)!r})\n"
        "from seqenc.server.cli import serve_command\nserve_command(prog_name='app.pyz')\n")
    zipapp.create_archive(app, tmp_path / "app.pyz")
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    assert subprocess.run([sys.executable, "-c", "import seqenc"], env=env,
                          capture_output=True).returncode != 0  # the decoy does hide it
    texts = [f"{i} " + "word " * 1000 for i in range(4)]  # 20 KB: past the inline limit
    with ServerProcess.ready("--threads", "1", "--log-level", "warning", env=env,
                             launcher=[sys.executable, str(tmp_path / "app.pyz")]) as server:
        with server.client(api_key=None) as client:
            response = client.post("/tokenize", json={"inputs": texts})
            assert response.status_code == 200, response.text[:300]
            assert len(response.json()) == 4
            assert len(json_helpers(server)) == 1
        assert "Traceback" not in server.output()


def test_echoed_values_are_capped(anon):
    response = anon.post("/v1/embeddings", json={"input": "x", "dimensions": 10 ** 4000})
    assert response.status_code == 422
    assert "4001 characters" in error_body(response)["error"]
    assert len(response.text) < 300
    response = anon.post("/v1/embeddings", json={"input": "x", "model": "m" * 100_000})
    assert response.status_code == 422 and len(response.text) < 300


@pytest.mark.parametrize("route, body, where", [
    ("/embed", {"inputs": ["fine", ""]}, "inputs[1]"),
    ("/embed", {"inputs": " \t\n "}, "inputs"),
    ("/v1/embeddings", {"input": ["a", "b", "   "]}, "input[2]"),
    ("/similarity", {"inputs": {"source_sentence": "", "sentences": ["x"]}},
     "inputs.source_sentence"),
])
def test_empty_or_blank_inputs_are_422_naming_the_input(anon, route, body, where):
    # TEI and OpenAI refuse empty input; a blank one would embed as [CLS][SEP] alone.
    response = anon.post(route, json=body)
    assert response.status_code == 422, response.text
    assert error_body(response) == {"error": f"{where} is empty or only whitespace: there is "
                                             "nothing to embed", "error_type": "empty"}
