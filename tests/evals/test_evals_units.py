import math

import pytest

from evals import extract
from evals.backends.base import Request, Sampling
from evals.backends.endpoint import EndpointBackend
from evals.backends.base import BackendConfig
from evals.config import ConfigError, load_file, sampling_grid
from evals.html_report import render
from evals.registry import get_task, load_task
from evals.report import Prices, summarize, union_seconds
from evals.runner import SweepConfig, plan
from evals.stats import accuracy_interval, wilson


@pytest.mark.parametrize("text,letter", [
    ("**Answer: C**", "C"), ("The correct answer is **(B)**.", "B"), ("Answer: $\\boxed{D}$", "D"),
    ("reasoning...\n\nA", "A"), ("**Final answer:** A", "A"), ("I think B is wrong. Answer: D", "D"),
    ("Answer: E", None), ("no idea", None)])
def test_mc_letter(text, letter):
    assert extract.mc_letter(text, "ABCD") == letter


def test_final_answer_and_label():
    assert extract.final_answer("so\n**Answer: 204**") == "204"
    assert extract.final_answer("x \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    labels = {"spam": ["junk"], "ham": ["not spam"]}
    assert extract.label("**Answer: not spam**", labels) == "ham"
    assert extract.label("Clearly spam.", labels) == "spam"
    assert extract.code_block("x\n```python\ndef f():\n    return 1\n```") == "def f():\n    return 1"


def test_wilson_and_bootstrap():
    lo, hi = wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95
    m, lo, hi, how = accuracy_interval({"a": [1.0, 0.0], "b": [1.0, 1.0]})
    assert how == "bootstrap" and m == 0.75 and lo <= m <= hi
    assert accuracy_interval({"a": [1.0], "b": [0.0]})[3] == "wilson"
    assert accuracy_interval({"a": [-0.5]}, clip=True)[0] == 0.0


def test_cost_and_duration():
    p = Prices()
    assert math.isclose(p.token_cost({"prompt_tokens": 1_000_000, "cached_tokens": 500_000,
                                      "completion_tokens": 1_000_000}), 0.075 + 0.007 + 0.60)
    assert union_seconds([(0, 2), (1, 3), (10, 11)]) == 4
    rec = {"task": "t", "benchmark": "B", "category": "Coding", "strategy": "zero-shot", "reasoning_effort": "low",
           "sampling_key": "s", "sample_id": "1", "status": "ok", "score": 1.0, "started_at": 0, "ended_at": 3600,
           "usage": {}, "device_seconds": 3600.0}
    rows = summarize([{**rec, "key": "k"}], Prices(device_hour=2.0))
    assert rows[0]["cost_usd"] == 2.0 and rows[0]["duration_s"] == 3600
    html = render(rows, [rec], {"name": "x"})
    assert "<svg" in html and "Accuracy vs cost" in html and "Completion length" in html


def test_replicas_partition_and_merge(cache_dir):
    lt = {"mmlu": load_task(get_task("mmlu"), cache_dir=cache_dir, offline=True),
          "gsm8k": load_task(get_task("gsm8k"), cache_dir=cache_dir, offline=True)}
    full = {w.key for w in plan(SweepConfig(tasks=("mmlu", "gsm8k"), repeats=2), lt)}
    parts = [{w.key for w in plan(SweepConfig(tasks=("mmlu", "gsm8k"), repeats=2, replica_index=i,
                                              replica_count=3), lt)} for i in range(3)]
    assert set().union(*parts) == full and sum(map(len, parts)) == len(full) == (3 + 2) * 3 * 2
    assert all(parts)


def test_fewshot_prompt_excludes_the_question(cache_dir):
    lt = load_task(get_task("gsm8k"), cache_dir=cache_dir, offline=True)
    from evals.prompts import build_messages
    msgs = build_messages(lt.spec, lt.samples[0], lt.fewshot_pool)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 5 + ["user"]
    assert msgs[1]["content"].endswith(tuple(f"Answer: {2 * i}" for i in range(1, 8)))


def test_config_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("tasks: [mmlu]\nsampling: {temperature: [0.6, 1.0], max_tokens: 100}\n")
    cfg = load_file(f)
    grid = sampling_grid(cfg["sampling"])
    assert [s.temperature for s in grid] == [0.6, 1.0] and grid[0].max_tokens == 100
    f.write_text("taskz: [mmlu]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_file(f)


@pytest.mark.parametrize("mode,check", [
    ("reasoning_effort", lambda b: b["reasoning_effort"] == "high"),
    ("reasoning", lambda b: b["extra_body"]["reasoning"] == {"effort": "high"}),
    ("chat_template_kwargs", lambda b: b["extra_body"]["chat_template_kwargs"] == {"reasoning_effort": "high"}),
    ("system", lambda b: b["messages"][0] == {"role": "system", "content": "Reasoning: high"}),
    ("none", lambda b: "reasoning_effort" not in b and "extra_body" not in b)])
def test_reasoning_effort_params(mode, check):
    be = EndpointBackend(BackendConfig(base_url="http://127.0.0.1:9/v1", model="m", reasoning_effort_param=mode))
    body = be._body(Request(id="x", messages=({"role": "user", "content": "q"},), reasoning_effort="high",
                            sampling=Sampling(max_tokens=5, seed=3)))
    assert check(body) and body["seed"] == 3 and body["max_tokens"] == 5
