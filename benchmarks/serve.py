"""Served throughput and latency against offline decoding of the same lines, per backend, in one run.

    python benchmarks/serve.py --workdir runs/multi30k --input ../shared/data/multi30k/test_2016_flickr.en \
        [--lines 256] [--clients 64] [--rounds 2] [--backends jax,ctranslate2] [--json benchmarks/cpu/serve.json]

For each backend: (1) offline: the backend's translator in this process translates the lines in one call (best of
two, after a warm-up call), then is freed; (2) served: `t2t-jax serve` starts on 127.0.0.1 (it compiles every
batch shape first), then `--clients` threads, each with its own keep-alive connection, send requests of 1 to 4
consecutive lines until every line has been sent `--rounds` times. Reported: sentences/s both ways and their
ratio, request latency p50/p99, errors (any non-200 answer or failed connection) and lost requests (no answer),
and the share of served translations equal to the offline ones. Traffic goes to 127.0.0.1 only; the load is
bounded by --lines x --rounds.
"""

import argparse
import gc
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def offline(workdir, backend, lines):
    """(sentences/s, translations) of the backend's translator, in this process."""
    if backend == "jax":
        from t2t_jax.translate import Translator

        translator = Translator.from_workdir(workdir)
        translate = translator.translate
    else:
        from t2t_jax.serving.ctranslate2 import CTranslate2Translator

        translator = CTranslate2Translator.from_workdir(workdir)
        translate = translator.translate
    translate(lines)  # compile / warm up
    best, outputs = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        outputs = translate(lines)
        best = min(best, time.perf_counter() - started)
    del translator, translate
    gc.collect()
    return len(lines) / best, outputs


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workdir, backend, port, max_batch):
    process = subprocess.Popen(
        [sys.executable, "-m", "t2t_jax", "serve", "--workdir", workdir, "--port", str(port), "--backend", backend,
         "--max_batch", str(max_batch), "--max_sentences", "64"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.perf_counter()
    for line in process.stdout:
        if line.startswith("warmed up"):
            print("  " + line.strip(), flush=True)
        if line.startswith("serving "):
            break
    else:
        raise SystemExit(f"the {backend} server did not start (exit {process.wait()})")
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep the pipe drained
    while True:  # "serving" is printed just before uvicorn opens the port
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/healthz")
            break
        except OSError:
            time.sleep(0.1)
    return process, time.perf_counter() - started


def load(port, lines, clients, rounds):
    """Requests of 1-4 consecutive lines, `rounds` passes over the lines, from `clients` threads."""
    rng = np.random.default_rng(0)
    requests, start = [], 0
    for _ in range(rounds):
        start = 0
        while start < len(lines):
            size = int(rng.integers(1, 5))
            requests.append((start, lines[start:start + size]))
            start += size
    results, lock, cursor = [None] * len(requests), threading.Lock(), [0]

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                index = cursor[0]
                cursor[0] += 1
            if index >= len(requests):
                connection.close()
                return
            first, texts = requests[index]
            began = time.perf_counter()
            try:
                connection.request("POST", "/v1/translate", json.dumps({"text": texts}),
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                body = json.loads(response.read())
                results[index] = (response.status, time.perf_counter() - began, first, body.get("translations"))
            except (OSError, http.client.HTTPException, ValueError) as error:
                results[index] = (f"error: {error}", time.perf_counter() - began, first, None)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, requests, results


def run_backend(args, backend, lines):
    print(f"== {backend}", flush=True)
    offline_rate, reference = offline(args.workdir, backend, lines)
    print(f"  offline: {offline_rate:.2f} sentences/s", flush=True)
    port = free_port()
    server, startup = start_server(args.workdir, backend, port, args.max_batch)
    try:
        seconds, requests, results = load(port, lines, args.clients, args.rounds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    answered = [result for result in results if result is not None]
    ok = [result for result in answered if result[0] == 200]
    latencies = np.array([result[1] for result in answered])
    sentences = sum(len(texts) for _, texts in requests)
    same = sum(translation == reference[first + offset]
               for _, _, first, translations in ok for offset, translation in enumerate(translations))
    served_rate = sentences / seconds
    row = {
        "backend": backend, "lines": len(lines), "clients": args.clients, "requests": len(requests),
        "sentences_sent": sentences, "offline_sentences_per_s": round(offline_rate, 2),
        "served_sentences_per_s": round(served_rate, 2), "served_over_offline": round(served_rate / offline_rate, 3),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3),
        "latency_p99_s": round(float(np.percentile(latencies, 99)), 3),
        "errors": len(answered) - len(ok), "lost": len(results) - len(answered),
        "equal_to_offline": round(same / max(sum(len(result[3]) for result in ok), 1), 4),
        "server_start_s": round(startup, 1),
    }
    problems = sorted({str(result[0]) for result in answered if result[0] != 200})
    if problems:
        row["error_kinds"] = problems[:5]
    print("  " + json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--lines", type=int, default=256)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max_batch", type=int, default=32)
    parser.add_argument("--backends", default="jax,ctranslate2")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    with open(args.input, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f][: args.lines]
    rows = [run_backend(args, backend, lines) for backend in args.backends.split(",")]
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "workdir": args.workdir, "input": os.path.basename(args.input), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print("| backend | offline sent/s | served sent/s | served/offline | p50 s | p99 s | errors | lost | = offline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['backend']} | {row['offline_sentences_per_s']} | {row['served_sentences_per_s']} | "
              f"{row['served_over_offline']:.0%} | {row['latency_p50_s']} | {row['latency_p99_s']} | "
              f"{row['errors']} | {row['lost']} | {row['equal_to_offline']:.1%} |")


if __name__ == "__main__":
    main()
