"""gptoss generate / chat / score, run in-process with the test engine's sizes (so they reuse its compilations),
and two real starts of `gptoss generate` showing that the second loads every executable from the persistent cache."""
import io
import json
import os
import subprocess
import sys

import pytest
from absl import app, flags

import gptoss_jax
from gptoss_jax.cli import chat as chat_cli
from gptoss_jax.checkpoint.synthetic import cached_checkpoint
from gptoss_jax.cli import generate as generate_cli
from gptoss_jax.cli import score as score_cli
from gptoss_jax.engine import Engine, Request, SamplingParams
from gptoss_jax.cli import engine_flags as eflags
from tests.engine.conftest import ENGINE_KW

FLAGS = flags.FLAGS


@pytest.fixture
def cli(tmp_path_factory):
    synth = str(tmp_path_factory.getbasetemp() / "cli_synthetic")
    base = ["--model=tiny", f"--synthetic_dir={synth}", "--seed=3", "--dtype=float32", "--noprogress",
            "--compilation_cache_dir=off", f"--num_slots={ENGINE_KW['num_slots']}",
            f"--max_len={ENGINE_KW['max_len']}", f"--prefill_chunk={ENGINE_KW['prefill_chunk']}",
            f"--min_prefill_chunk={ENGINE_KW['min_prefill_chunk']}", f"--decode_steps={ENGINE_KW['decode_steps']}",
            f"--max_top_logprobs={ENGINE_KW['max_top_logprobs']}"]

    def run(module, *args):
        FLAGS.unparse_flags()
        FLAGS(["gptoss"] + base + list(args))
        try:
            return module.main(["gptoss"])
        finally:
            FLAGS.unparse_flags()

    run.synthetic_dir = synth
    return run


def test_generate_json_matches_the_engine(cli, capsys):
    cli(generate_cli, "--prompt_ids=5,6,7,8", "--temperature=0", "--max_tokens=6", "--logprobs", "--top_logprobs=3",
        "--json")
    out = json.loads(capsys.readouterr().out)
    [s] = out["samples"]
    assert out["prompt_ids"] == [5, 6, 7, 8] and len(s["token_ids"]) == 6 and s["finish_reason"] == "length"
    assert len(s["logprobs"]) == 6 and all(len(t) == 3 and t[0][1] == lp for t, lp in zip(s["top_logprobs"],
                                                                                           s["logprobs"]))
    path = cached_checkpoint("tiny", 3, cli.synthetic_dir, show_progress=False)   # what the CLI loaded
    engine = Engine(gptoss_jax.load(path, dtype="float32", show_progress=False), **ENGINE_KW)
    [ref] = engine.generate([Request([5, 6, 7, 8], SamplingParams(temperature=0.0, max_tokens=6))])
    assert s["token_ids"] == ref.token_ids


def test_generate_streams_ids_and_samples_several(cli, capsys, monkeypatch):
    monkeypatch.setattr(eflags, "try_tokenizer", lambda: None)                 # ids mode
    cli(generate_cli, "--prompt_ids=9,10", "--temperature=0", "--max_tokens=5")
    streamed = capsys.readouterr().out.strip()
    cli(generate_cli, "--prompt_ids=9,10", "--temperature=0", "--max_tokens=5", "--json")
    ids = json.loads(capsys.readouterr().out)["samples"][0]["token_ids"]
    assert streamed == ",".join(map(str, ids))
    cli(generate_cli, "--prompt_ids=9,10", "--temperature=1", "--sampling_seed=4", "--num_samples=3",
        "--max_tokens=5", "--json")
    samples = json.loads(capsys.readouterr().out)["samples"]
    assert [s["seed"] for s in samples] == [4, 5, 6] and len({tuple(s["token_ids"]) for s in samples}) > 1


def test_generate_bad_input_is_a_usage_error(cli):
    with pytest.raises(app.UsageError, match="top_p"):
        cli(generate_cli, "--prompt_ids=1,2", "--top_p=1.5")
    with pytest.raises(app.UsageError, match="outside the vocabulary"):
        cli(generate_cli, "--prompt_ids=1,99999")
    with pytest.raises(app.UsageError, match="exactly one of --prompt"):
        cli(generate_cli)
    with pytest.raises(app.UsageError, match="integer token ids"):
        cli(generate_cli, "--prompt_ids=1,x")
    with pytest.raises(app.UsageError, match="token_id:bias"):
        cli(generate_cli, "--prompt_ids=1", "--logit_bias=5")


class FakeEncoding:
    """Bytes as token ids (the tiny vocabulary has 512): enough to drive the text paths."""

    def encode(self, text, allowed_special=()):
        return list(text.encode())

    def decode(self, ids):
        return bytes(ids).decode(errors="replace")


def test_text_prompts_use_the_tokenizer_or_say_it_is_missing(cli, capsys, monkeypatch):
    import gptoss_jax.harmony
    monkeypatch.setitem(sys.modules, "gptoss_jax.harmony.tokenizer", None)     # no harmony tokenizer
    monkeypatch.delattr(gptoss_jax.harmony, "tokenizer", raising=False)
    with pytest.raises(app.UsageError, match="--prompt_ids"):
        cli(generate_cli, "--prompt=hello")
    monkeypatch.setattr(eflags, "load_tokenizer", lambda: FakeEncoding())
    monkeypatch.setattr(eflags, "try_tokenizer", lambda: FakeEncoding())
    cli(generate_cli, "--prompt=hello", "--temperature=0", "--max_tokens=4", "--json", "--logit_bias=" +
        ",".join(f"{i}:-100" for i in range(128, 512)))                         # ASCII only: printable text
    s = json.loads(capsys.readouterr().out)["samples"][0]
    assert s["text"] == FakeEncoding().decode(s["token_ids"]) and all(t < 128 for t in s["token_ids"])


def test_score_cli_pairs_and_jsonl(cli, capsys, tmp_path):
    cli(score_cli, "--prompt_ids=1,2,3", "--continuation_ids=4,5")
    one = json.loads(capsys.readouterr().out)
    assert one["num_tokens"] == 2 and len(one["token_logprobs"]) == 2 and one["logprob"] < 0
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": [1, 2, 3], "continuation": [4, 5]}) + "\n" +
                 json.dumps({"prompt": [7], "continuation": [8, 9, 10]}) + "\n")
    cli(score_cli, f"--input={f}")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0] == one and lines[1]["num_tokens"] == 3
    f.write_text('{"prompt": [1]}\n')
    with pytest.raises(app.UsageError, match="continuation"):
        cli(score_cli, f"--input={f}")


def test_chat_streams_turns_and_keeps_context(cli, capsys, monkeypatch):
    monkeypatch.setattr(eflags, "try_tokenizer", lambda: None)                 # ids mode
    monkeypatch.setattr(sys, "stdin", io.StringIO("1,2,3\nnot ids\n4,5\n/reset\n1,2,3\n/quit\n"))
    cli(chat_cli, "--temperature=0", "--max_tokens=4", "--stop_token_ids=")
    out = capsys.readouterr().out
    replies = [line.split("> ")[-1] for line in out.splitlines()
               if line.startswith("> ") and "," in line and "[" not in line]
    assert len(replies) == 3 and replies[0] == replies[2] and replies[1] != replies[0]   # /reset forgot turn 1
    assert "comma-separated" in out and "context 7/64" in out and "context 13/64" in out


def test_second_start_loads_every_executable_from_the_persistent_cache(tmp_path):
    args = [sys.executable, "-m", "gptoss_jax.cli.main", "generate", "--model=tiny",
            f"--synthetic_dir={tmp_path / 'synthetic'}", f"--compilation_cache_dir={tmp_path / 'xla'}",
            "--prompt_ids=1,2,3", "--temperature=0", "--max_tokens=5", "--json", "--noprogress", "--num_slots=1",
            "--max_len=16", "--prefill_chunk=16", "--min_prefill_chunk=16", "--max_top_logprobs=0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    runs = []
    for _ in range(2):
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    first, second = (r["compilation"] for r in runs)
    assert first["cache_misses"] > 0 and first["cache_hits"] == 0
    assert second["cache_misses"] == 0 and second["cache_hits"] == first["cache_misses"]
    assert runs[0]["samples"][0]["token_ids"] == runs[1]["samples"][0]["token_ids"]
