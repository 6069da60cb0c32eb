"""`python launch/local.py -n 2 --cpu_devices 4 -- gptoss serve --model=tiny --mesh=1,4,2`: the HTTP front end on
process 0 feeds one engine spanning both processes; its tokens are the single-process engine's, concurrent and
cancelled requests keep every process in step, and SIGTERM stops the whole job cleanly."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import openai

import gptoss_jax
from gptoss_jax.checkpoint.synthetic import cached_checkpoint
from gptoss_jax.engine import Engine, Request, SamplingParams

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = ["--num_slots=4", "--max_len=32", "--prefill_chunk=16", "--min_prefill_chunk=16", "--decode_steps=4"]
PROMPTS = [[5, 6, 7, 8, 9], list(range(20, 34)), [300, 2, 7, 9, 100, 101, 102, 7, 44, 45, 46]]


def test_two_process_server_matches_one_process(tmp_path):
    synth = str(tmp_path / "synth")
    path = cached_checkpoint("tiny", 0, synth, show_progress=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTOSS_") and k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    cmd = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "-n", "2", "--cpu_devices", "4", "--timeout",
           "400", "--", sys.executable, "-m", "gptoss_jax.cli.main", "serve", "--model=tiny", "--mesh=1,4,2",
           "--port=0", "--dtype=float32", f"--synthetic_dir={synth}", "--noprogress", "--compilation_cache_dir=off",
           *SIZES]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines, port = [], None
    try:
        deadline = time.monotonic() + 300
        while port is None:
            line = proc.stdout.readline()
            assert (line or proc.poll() is None) and time.monotonic() < deadline, "".join(lines)[-4000:]
            lines.append(line)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
            port = int(m.group(1)) if m else None
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
        kws = [dict(max_tokens=10, temperature=0.0), dict(max_tokens=12, temperature=1.0, seed=9),
               dict(max_tokens=6, temperature=0.7, top_p=0.9, seed=2)]
        served = [client.completions.create(model="tiny", prompt=p, **kw).choices[0].token_ids
                  for p, kw in zip(PROMPTS, kws)]
        # concurrent requests and a client that leaves mid-stream: every process applies the same changes
        results = {}

        def ask(i):
            results[i] = client.completions.create(model="tiny", prompt=PROMPTS[i], **kws[i]).choices[0].token_ids
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        stream = client.completions.create(model="tiny", prompt=[1, 2, 3], max_tokens=25, stream=True)
        next(iter(stream))
        stream.close()
        for t in threads:
            t.join(timeout=300)
        assert [results[i] for i in range(3)] == served
        proc.send_signal(signal.SIGTERM)
        # the launcher passes SIGTERM to both processes and exits 143 (stopped by SIGTERM); nothing failed
        assert proc.wait(timeout=120) in (0, 128 + signal.SIGTERM), "".join(lines)[-4000:]
        assert "Traceback" not in "".join(lines), "".join(lines)[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    model = gptoss_jax.load(path, dtype="float32", show_progress=False)
    engine = Engine(model, num_slots=4, max_len=32, prefill_chunk=16, min_prefill_chunk=16, decode_steps=4,
                    max_top_logprobs=20)
    want = engine.generate([Request(p, SamplingParams(**kw)) for p, kw in zip(PROMPTS, kws)])
    engine.close()
    assert served == [r.token_ids for r in want]
