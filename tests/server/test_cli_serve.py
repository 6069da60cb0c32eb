"""`gptoss serve` as users run it: a subprocess on loopback, the eval harness's endpoint backend against it end to
end, and a clean stop on SIGTERM with a request in flight."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_cli(tmp_path, *extra, timeout=420):
    cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "serve", "--model=demo", "--port=0", "--dtype=float32",
           "--num_slots=4", "--max_len=1024", "--prefill_chunk=256", "--min_prefill_chunk=128", "--noprogress",
           f"--synthetic_dir={tmp_path / 'synth'}", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines, port = [], None
    deadline = time.monotonic() + timeout
    while port is None:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(line)
        m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
        if m:
            port = int(m.group(1))
    rest = []
    threading.Thread(target=lambda: rest.extend(proc.stderr), daemon=True).start()
    return proc, port, rest


def test_eval_endpoint_backend_against_the_server_and_sigterm(tmp_path):
    proc, port, err = start_cli(tmp_path, "--shutdown_grace_s=3")
    try:
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "eval", "--backend=endpoint",
               f"--base_url=http://127.0.0.1:{port}/v1", "--model=demo", "--api_key=EMPTY", "--tasks=ifeval",
               "--limit=2", "--repeats=1", "--reasoning_efforts=low,high", "--max_tokens=12", "--concurrency=4",
               f"--output_dir={out}", "--progress=false"]
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        assert len(recs) == 4 and all(r["status"] == "ok" for r in recs), recs
        assert all(r["usage"]["completion_tokens"] == 12 and r["usage"]["prompt_tokens"] > 50 for r in recs)
        assert {r["reasoning_effort"] for r in recs} == {"low", "high"}
        # a long stream is in flight when SIGTERM comes: the server stops within its grace and exits cleanly
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=120)
        stream = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "go"}],
                                                max_tokens=900, stream=True)
        next(iter(stream))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        got = 0
        try:
            for _ in stream:
                got += 1
        except (openai.APIError, Exception):  # noqa: BLE001 - the stream may be cut at the grace
            pass
        assert proc.wait(timeout=120) == 0, "".join(err)
        assert time.monotonic() - t0 < 90
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
