"""`t2t-jax serve` end to end: a real uvicorn server on a trained reverse model, real HTTP clients on 127.0.0.1,
and the web page in a real headless browser. Outputs equal `t2t-jax decode` of the same lines whatever batch
they landed in; bad requests get a 4xx with a JSON reason and never disturb the server or another client."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, free_port, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serve")]  # one server for the file

MODEL = config_flags(
    model=TINY_MODEL, data=dict(TINY_DATA, max_source_length=16, max_target_length=16, batch_tokens=512),
    train=dict(steps=300, warmup_steps=30, log_every=300, eval_every=1000, checkpoint_every=1000, average_last=0),
)
LIMITS = ["--max_batch", "4", "--max_sentences", "16", "--max_chars", "400", "--max_queue", "64"]
LINES = ["1 2 3", "4 5 6 7 8", "", "9", "3 3 1 2 7 7", "2 4 6 8 1 3 5 7 9", "5 5", "8 1", "7 7 7 7 7 7 7 7 7 7"]


@pytest.fixture(scope="module")
def workdir(train_workdir):
    return train_workdir("serve", "--config", "configs/reverse.py", *MODEL)


@pytest.fixture(scope="module")
def decoded(workdir):
    """What `t2t-jax decode` makes of LINES: the reference every served answer must equal."""
    result = run_cli("decode", "--workdir", workdir, stdin="".join(f"{line}\n" for line in LINES).encode())
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return dict(zip(LINES, result.stdout.decode().splitlines()))


@pytest.fixture(scope="module")
def server(workdir, tmp_path_factory):
    yield from start_server(workdir, tmp_path_factory, "jax")


def start_server(workdir, tmp_path_factory, backend):
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "t2t_jax", "serve", "--workdir", workdir, "--port", str(port),
                                    "--backend", backend, *LIMITS], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 400
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except OSError:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the server did not open its port:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
    yield url
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down, then ends by the signal it caught (as its default handler would)
    assert process.wait(60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def call(url, path, body=None, raw=None, method=None):
    """(status, headers, JSON or text) of one request; 4xx/5xx answers are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, payload = error.code, dict(error.headers), error.read()
    text = payload.decode()
    return status, headers, json.loads(text) if headers.get("content-type", "").startswith("application/json") \
        else text


def test_concurrent_requests_equal_decode_of_the_same_lines(server, decoded):
    requests = [LINES[i:i + size] for size in (1, 2, 3) for i in range(0, len(LINES), size)] * 2  # 2 x 18 requests
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda texts: call(server, "/v1/translate", {"text": texts}), requests))
    for texts, (status, _, body) in zip(requests, answers):
        assert status == 200, body
        assert body["translations"] == [decoded[text] for text in texts]
    assert decoded["1 2 3"] == "3 2 1"  # the model learned something: the comparison is not of empty strings

    status, _, metrics = call(server, "/metrics")
    assert status == 200
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values['t2t_requests_total{path="/v1/translate",status="200"}'] >= len(requests)
    assert values["t2t_sentences_total"] >= 2 * 2 * len(LINES) * 3 / 3
    assert values["t2t_translate_latency_seconds_count"] >= len(requests)
    assert values["t2t_batch_sentences_count"] < len(requests)  # requests were merged into fewer decoding calls
    assert "t2t_queue_sentences" in values


def test_search_options_model_and_health(server, decoded):
    status, _, body = call(server, "/v1/translate", {"text": ["1 2 3", ""], "n_best": 2, "beam_size": 3, "alpha": 1.0})
    assert status == 200
    best, empty = body["translations"]
    assert len(best) == 2 and best[0]["score"] >= best[1]["score"] and empty[0]["text"] == ""
    status, _, body = call(server, "/v1/translate", {"text": ["4 5 6 7 8"], "beam_size": 1})  # greedy
    assert status == 200 and len(body["translations"]) == 1
    status, _, model = call(server, "/v1/model")
    assert status == 200 and model["step"] == 300 and model["backend"] == "jax" and model["attention"]
    assert model["decode"]["beam_size"] == 4 and model["vocabulary"]["size"] > 10
    assert call(server, "/healthz")[:1] == (200,)


@pytest.mark.parametrize("body, raw, status, words", [
    (None, b'{"text": ["1 2"', 400, "not valid JSON"),
    (None, b'{"text": ["\xff\xfe"]}', 400, "not valid UTF-8"),
    ({"text": "1 2 3"}, None, 400, "list of strings"),
    ({"text": ["1", 2]}, None, 400, "list of strings"),
    ([1, 2], None, 400, "JSON object"),
    ({"text": ["1"], "beam": 4}, None, 400, "unknown field"),
    ({"text": ["1"], "beam_size": "4"}, None, 400, "beam_size"),
    ({"text": ["1"], "beam_size": 0}, None, 400, "beam_size"),
    ({"text": ["1"], "beam_size": True}, None, 400, "beam_size"),
    ({"text": ["1"], "n_best": 5}, None, 400, "n_best"),
    ({"text": ["1"], "alpha": -1}, None, 400, "alpha"),
    ({"text": ["1"] * 17}, None, 413, "17 sentences"),
    ({"text": ["1 " * 201]}, None, 413, "characters"),
])
def test_bad_requests_get_a_json_reason(server, body, raw, status, words):
    got, _, answer = call(server, "/v1/translate", body, raw)
    assert got == status and words in answer["error"], answer
    assert call(server, "/v1/translate", {"text": ["1 2 3"]})[2]["translations"] == ["3 2 1"]  # still serving


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """Content-Length of 2 MiB (the limit is 1 MiB): 413 at once, without waiting for the body (sent raw: a client
    library would race the early answer while still sending)."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2097152\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:500]
    assert "2097152 bytes" in json.loads(body)["error"]
    assert call(server, "/v1/translate", {"text": ["1 2 3"]})[0] == 200


def test_other_paths_and_methods(server):
    assert call(server, "/v2/translate")[0] == 404
    assert call(server, "/v1/translate", method="GET")[0] == 405
    assert call(server, "/v1/attention")[0] == 400


def test_an_overlong_sentence_is_truncated_with_a_warning(server, decoded):
    long = " ".join(["1", "2", "3"] * 10)  # 30 tokens > max_source_length 16
    status, _, body = call(server, "/v1/translate", {"text": ["1 2 3", long]})
    assert status == 200 and len(body["translations"]) == 2 and body["translations"][0] == decoded["1 2 3"]
    assert body["warnings"] == ["sentence 1 is longer than 16 tokens and was truncated"]


def test_a_full_queue_answers_503_and_loses_nothing(server, decoded):
    """64 sentences may wait: 12 concurrent requests of 16 overflow it; every answer is either the full
    translation or a 503 with Retry-After, and the server serves on."""
    texts = (LINES * 2)[:16]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: call(server, "/v1/translate", {"text": texts}), range(12)))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    for status, headers, body in answers:
        if status == 200:
            assert body["translations"] == [decoded[text] for text in texts]
        else:
            assert headers["retry-after"] == "1" and "busy" in body["error"]
    assert call(server, "/v1/translate", {"text": texts})[2]["translations"] == [decoded[text] for text in texts]


def test_cli_mistakes_are_one_line(workdir, tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert_clear_error(run_cli("serve", "--workdir", workdir, "--port", str(port)), "in use")
    assert_clear_error(run_cli("serve", "--workdir", workdir, "--backend", "onnx", "--port", str(free_port())),
                       "--backend")
    assert_clear_error(run_cli("serve", "--workdir", str(tmp_path / "none"), "--port", str(free_port())))
    assert_clear_error(run_cli("serve", "--workdir", workdir, "--max_batch", "0"), "--max_batch")


# --- the page at / in a real headless browser ---------------------------------------------------------------
def test_the_page_translates_and_shows_attention_in_a_headless_browser(server, decoded):
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium; .ci/run does): the page was not opened")
    problems = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('step 300')")

        page.fill("#source", "1 2 3")
        page.click("#translate")
        page.wait_for_selector("#translations li")
        assert page.inner_text("#translations li") == decoded["1 2 3"]
        frame = page.frame_locator("#attention")
        frame.locator("#heatmap .cell").first.wait_for(timeout=60_000)
        cells = frame.locator("#heatmap .cell").count()
        assert cells == 4 * 4, cells  # cross attention: 3 target words + </s> by 3 source words + </s>
        assert "\u2192" in frame.locator(".pair").inner_text()

        page.fill("#source", "4 5 6 7 8\n9\n")  # two sentences: translations, no maps
        page.click("#translate")
        page.wait_for_function("document.querySelectorAll('#translations li').length === 2")
        assert page.locator("#translations li").all_inner_texts() == [decoded["4 5 6 7 8"], decoded["9"]]
        assert page.locator("#attention").get_attribute("class") == "hidden"

        assert problems == [], problems

        page.fill("#source", " ".join(["1"] * 401))  # over the server's character limit: the reason is shown
        page.click("#translate")
        page.wait_for_selector("#status.error")
        assert "characters" in page.inner_text("#status")
        browser.close()
    assert problems == ["Failed to load resource: the server responded with a status of 413 (Request Entity Too "
                        "Large)"], problems  # the browser's own note of the refused request, nothing else


def test_the_ctranslate2_backend_serves_the_same_translations(workdir, decoded, tmp_path_factory):
    pytest.importorskip("ctranslate2")
    server = start_server(workdir, tmp_path_factory, "ctranslate2")
    url = next(server)
    try:
        status, _, body = call(url, "/v1/translate", {"text": LINES})
        assert status == 200 and body["translations"] == [decoded[text] for text in LINES]
        status, _, body = call(url, "/v1/translate", {"text": ["1 2 3"], "n_best": 2})
        assert status == 200 and body["translations"][0][0]["text"] == decoded["1 2 3"]
        status, _, model = call(url, "/v1/model")
        assert model["backend"] == "ctranslate2" and model["step"] == 300 and not model["attention"]
        status, _, body = call(url, "/v1/attention?text=1")
        assert status == 404 and "jax backend" in body["error"]
    finally:
        next(server, None)  # stops it
