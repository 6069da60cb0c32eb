"""The local backend: the in-process JAX engine behind the eval harness, on the embedded synthetic model."""
import json
import subprocess
import sys

import pytest

from evals.backends.base import BackendConfig, BackendFatalError, Request, Sampling
from evals.backends.local import LocalBackend


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    synth = tmp_path_factory.mktemp("synth")
    b = LocalBackend(BackendConfig(kind="local", model="demo", extra={
        "num_slots": "2", "max_len": "256", "synthetic_dir": str(synth), "dtype": "float32",
        "max_tokens": "100000"}))  # no cap below the context: the capping tests below reach it
    yield b
    b.close()


def test_complete_many_runs_chats_and_fails_only_the_bad_one(backend):
    ok = [Request(id=f"q{i}", messages=({"role": "user", "content": f"What is {i} + {i}?"},),
                  reasoning_effort=effort, sampling=Sampling(temperature=1.0, max_tokens=8, seed=i))
          for i, effort in enumerate(["low", "medium", "high"])]
    too_long = Request(id="long", messages=({"role": "user", "content": "word " * 400},),
                       sampling=Sampling(max_tokens=8))
    out = dict(backend.complete_many(iter(ok[:2] + [too_long] + ok[2:])))
    assert set(out) == {"q0", "q1", "q2", "long"}
    # a completion limit past the context is capped at what fits after the prompt (as a server caps it)
    big = Request(id="big", messages=({"role": "user", "content": "hi"},), sampling=Sampling(max_tokens=10**6, seed=1))
    r = backend.complete(big)
    assert r.ok and r.finish_reason == "length" and r.prompt_tokens + r.completion_tokens == 256
    assert not out["long"].ok and "prompt" in out["long"].error
    for rid in ("q0", "q1", "q2"):
        r = out[rid]
        assert r.ok and r.completion_tokens == 8 and r.finish_reason == "length"
        assert r.prompt_tokens > 50 and 0 < r.device_seconds <= r.latency_s


def test_seeded_requests_reproduce(backend):
    req = Request(id="s", messages=({"role": "user", "content": "hi"},), sampling=Sampling(max_tokens=6, seed=7))
    a = backend.complete(req)
    b = backend.complete(req)
    assert (a.content, a.reasoning, a.completion_tokens) == (b.content, b.reasoning, b.completion_tokens)


def test_bad_backend_args_are_named(tmp_path):
    with pytest.raises(BackendFatalError, match=r"not understood by the local backend"):
        LocalBackend(BackendConfig(kind="local", model="demo", extra={"num_slotz": "2"}))
    with pytest.raises(BackendFatalError, match="needs --model"):
        LocalBackend(BackendConfig(kind="local", model=""))
    with pytest.raises(BackendFatalError, match="cannot start"):
        LocalBackend(BackendConfig(kind="local", model=str(tmp_path / "missing")))


def test_gptoss_eval_sweeps_three_efforts_on_the_embedded_model(tmp_path):
    """The acceptance run: `gptoss eval` on the synthetic model, several tasks x low/medium/high, a table."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "eval", "--backend=local", "--model=demo",
           "--tasks=humaneval,ifeval", "--limit=2", "--repeats=1", "--max_tokens=12", f"--output_dir={out}",
           "--backend_arg=num_slots=4", "--backend_arg=max_len=1024",
           f"--backend_arg=synthetic_dir={tmp_path / 'synth'}", "--progress=false"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith(("HumanEval", "IFEval"))]
    assert len(rows) == 6 and all(sum(f" {e} " in r for r in rows) == 2 for e in ("low", "medium", "high"))
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 12 and all(r["status"] == "ok" for r in recs)
    assert {(r["task"], r["reasoning_effort"]) for r in recs} == {
        (t, e) for t in ("humaneval", "ifeval") for e in ("low", "medium", "high")}
    assert all(r["usage"]["completion_tokens"] == 12 and r["device_seconds"] > 0 for r in recs)
