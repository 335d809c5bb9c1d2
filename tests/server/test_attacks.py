"""Issue 17's attacks, each replayed against a real server subprocess: what failed (500s,
unbounded validation, /tokenize past the limits, connections held for ever) and the sharp
edges. Waits are bounded; nothing asserts on speed."""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import zipapp
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from seqenc.server.settings import Settings

from .support import ServerProcess, error_body, heavy_texts, metric, wait_for

READ_TIMEOUT = 1.5  # the server's --read-timeout here: short, so that stalls end soon
BOUND = 60.0  # bounds every wait; a server that never closes fails the test at this bound
PAYLOAD = 200_000
BUFFERED = 300_000
MAX_CONNECTIONS = 16
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def target() -> Iterator[ServerProcess]:
    """No API key (the cross-site case), two slots, short read deadlines, small caps."""
    with ServerProcess.ready("--max-concurrent-requests", "2", "--read-timeout",
                             str(READ_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
                             "--payload-limit", str(PAYLOAD), "--max-buffered-bytes",
                             str(BUFFERED), "--threads", "1", "--log-level", "info") as proc:
        yield proc


@pytest.fixture(scope="module")
def anon(target: ServerProcess) -> Iterator[httpx.Client]:
    with target.client(api_key=None) as c:
        yield c


def address(server: ServerProcess) -> tuple[str, int]:
    url = urlsplit(server.url)
    return url.hostname or "127.0.0.1", url.port or 80


def post_raw(client: httpx.Client, route: str, body: bytes) -> httpx.Response:
    return client.post(route, content=body, headers=JSON)


def closed_by_server(sock: socket.socket, timeout: float = BOUND) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {timeout}s")
    except ConnectionResetError:
        pass
    return data


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM := current RSS


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


# ---- 3. /tokenize: a slot like every working route, and a bounded answer ----------------------


def test_every_working_route_takes_a_slot_and_429_says_when_to_retry(anon):
    heavy = {"inputs": heavy_texts(16), "truncate": True}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        blockers = [pool.submit(anon.post, "/embed", json=heavy) for _ in range(2)]
        wait_for(lambda: metric(anon, "seqenc_queue_requests") == 2, "both slots taken", BOUND)
        for route, body in (("/tokenize", {"inputs": ["a b c"] * 8}),
                            ("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": [101, 102]}),
                            ("/similarity", {"inputs": {"source_sentence": "a",
                                                        "sentences": ["b"]}})):
            response = anon.post(route, json=body)
            assert response.status_code == 429, (route, response.text)
            assert error_body(response)["error_type"] == "overloaded"
            assert response.headers["retry-after"] == "1"
        assert [b.result().status_code for b in blockers] == [200, 200]
    assert anon.post("/tokenize", json={"inputs": "a b c"}).status_code == 200


def test_tokenize_answer_is_bounded(anon):
    info = anon.get("/info").json()
    assert "max_tokenize_tokens" in info, info
    limit = info["max_tokenize_tokens"]
    assert limit == info["max_client_batch_size"] * info["max_input_length"]
    n = limit * 2 // 3  # tokens of text: two such inputs are past the limit, one is not
    response = anon.post("/tokenize", json={"inputs": ["a " * n] * 2})
    assert response.status_code == 422, response.text[:200]
    assert response.json()["error_type"] == "too_many_tokens"
    assert f"more than the {limit}" in response.json()["error"]
    assert len(anon.post("/tokenize", json={"inputs": "a " * n}).json()[0]) == n + 2


# ---- 4. connections: read deadlines, a cap, bytes buffered ------------------------------------


def test_idle_and_stalled_connections_are_closed(target):
    host, port = address(target)
    head = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    stalls = {
        "sends nothing": b"",
        "half a head": b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty",
        "5 of 100 body bytes": head + b"Content-Length: 100\r\n\r\n" + b'{"inp',
        "a chunked body that stops": head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"inp\r\n",
    }
    socks = {}
    for name, data in stalls.items():
        socks[name] = socket.create_connection((host, port), timeout=BOUND)
        socks[name].sendall(data)
    for name, sock in socks.items():
        reply = closed_by_server(sock)
        assert reply == b"", (name, reply)  # closed without an answer: the client stalled
        sock.close()


def test_a_trickled_body_is_cut_off(target):
    """A byte every 50 ms never pauses for the read timeout, but falls far below the body's
    minimum rate: the server closes it rather than wait for ever."""
    host, port = address(target)
    with socket.create_connection((host, port), timeout=BOUND) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"1\r\n \r\n")
            except (BrokenPipeError, ConnectionResetError):
                return
            if select.select([sock], [], [], 0.05)[0]:
                assert closed_by_server(sock) == b""
                return
        pytest.fail(f"a trickled body was still read after {BOUND}s")


def test_at_the_connection_cap_idle_ones_make_room_busy_ones_do_not(target, anon):
    host, port = address(target)
    # Idle connections fill the cap: a new client is still served (the idle longest goes).
    idle = [socket.create_connection((host, port), timeout=BOUND)
            for _ in range(MAX_CONNECTIONS + 2)]
    try:
        with target.client(api_key=None) as newcomer:
            assert newcomer.post("/embed", json={"inputs": "still served"}).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    # Connections all busy sending a body: a new one gets 503 and is closed.
    head = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{")
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS + 4):
            busy.append(socket.create_connection((host, port), timeout=BOUND))
            busy[-1].sendall(head)
            time.sleep(0.03)  # for the server to read the head: this one is busy, not idle
        replies = [closed_by_server(sock) for sock in busy]
    finally:
        for sock in busy:
            sock.close()
    refused = [r for r in replies if r.startswith(b"HTTP/1.1 503")]
    assert len(refused) >= 1, replies
    assert all(b"retry-after: 1" in r and b'"error_type": "overloaded"' in r for r in refused)
    assert anon.get("/health").status_code == 200


def test_bytes_buffered_across_requests_are_capped(target, anon):
    """One client holds 180 kB of a 200 kB body; another's 150 kB body would take the bytes
    buffered past --max-buffered-bytes (300 kB): 429 with Retry-After, not more memory."""
    host, port = address(target)
    big = json.dumps({"inputs": "y" + " " * 149_990}).encode()
    with socket.create_connection((host, port), timeout=BOUND) as holder:
        holder.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 200000\r\n\r\n" + b" " * 180_000)
        wait_for(lambda: metric(anon, "seqenc_buffered_request_bytes") == 180_000,
                 "the server to read the holder's bytes", BOUND)
        refused = post_raw(anon, "/embed", big)
        assert refused.status_code == 429, refused.text[:200]
        assert refused.headers["retry-after"] == "1"
        assert "max_buffered_bytes" in refused.json()["error"]
    wait_for(lambda: post_raw(anon, "/embed", big).status_code == 200,
             "the holder's bytes to be released", BOUND)


# ---- sharp edges --------------------------------------------------------------------------------


def test_no_redirect_built_from_the_host_header(anon):
    response = anon.post("/embed/", json={"inputs": "x"}, headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


def test_cross_site_text_plain_post_is_415_without_a_key(anon):
    response = anon.post("/embed", content=b'{"inputs": "x"}',
                         headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error_type"] == "unsupported_media_type"


def test_content_length_with_chunked_is_400_and_closes(target):
    host, port = address(target)
    with socket.create_connection((host, port), timeout=BOUND) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"f\r\n{\"inputs\": \"x\"}\r\n0\r\n\r\n")
        reply = closed_by_server(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"invalid_request" in reply


def test_info_names_the_model_without_its_path(anon):
    info = anon.get("/info").json()
    assert info["model_path"] is None
    assert info["model_id"] == "all-MiniLM-L6-v2"


def test_api_key_is_visible_ascii_or_a_usage_error():
    with pytest.raises(ValueError, match="visible ASCII"):
        Settings(api_key="clé")
    with pytest.raises(ValueError, match="visible ASCII"):
        Settings(api_key="two words")
    result = subprocess.run([sys.executable, "-m", "seqenc.server", "--api-key", "ключ"],
                            capture_output=True, text=True, timeout=BOUND)
    assert result.returncode == 2, result.stderr
    assert "visible ASCII" in result.stderr


# ---- shutdown: stalled connections do not hold it up; cut-off work says so --------------------


def test_sigterm_does_not_wait_for_stalled_connections():
    with ServerProcess.ready("--graceful-timeout", "600", "--read-timeout", "1", "--threads",
                             "1", "--log-level", "info") as proc:
        host, port = address(proc)
        stalled = []
        for data in (b"", b"POST /embed HTTP/1.1\r\nHost: x\r\n",
                     b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inp"):
            stalled.append(socket.create_connection((host, port), timeout=BOUND))
            stalled[-1].sendall(data)
        with proc.client(api_key=None, timeout=300) as c, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            work = pool.submit(c.post, "/embed", json={"inputs": heavy_texts(8),
                                                       "truncate": True})
            wait_for(lambda: metric(c, "seqenc_queue_requests") == 1, "work in flight", BOUND)
            proc.terminate()
            assert work.result().status_code == 200  # real work finishes
        assert proc.proc.wait(BOUND) == 0  # not after --graceful-timeout's 600 s
        for sock in stalled:
            sock.close()
        assert "Traceback" not in proc.output()


def test_work_cut_off_by_the_graceful_timeout_is_503_without_a_traceback():
    with ServerProcess.ready("--graceful-timeout", "0.2", "--threads", "1", "--log-level",
                             "info") as proc:
        with proc.client(api_key=None, timeout=300) as c, \
                concurrent.futures.ThreadPoolExecutor(3) as pool:
            heavy = {"inputs": heavy_texts(), "truncate": True}
            work = [pool.submit(c.post, "/embed", json=heavy) for _ in range(3)]
            wait_for(lambda: metric(c, "seqenc_queue_requests") == 3, "work in flight", BOUND)
            proc.terminate()
            statuses = [w.result().status_code for w in work]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        assert proc.proc.wait(BOUND) == 0
        output = proc.output()
        assert "Traceback" not in output and "CancelledError" not in output
        assert "cut short: shutdown outlasted --graceful-timeout" in output
