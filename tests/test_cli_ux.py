"""The command line as a user meets it: bad input ends a command with ONE line `gptoss SUB: error: ...` on stderr
and exit status 2 (never a traceback), before any weights load; --help lists a subcommand's flags. Everything runs
in-process through the real entry point (gptoss_jax.cli.main.run), on presets and checkpoints written here."""
import io
import json
import os
import re
import sys

import pytest
from absl import flags

import gptoss_jax
from gptoss_jax.checkpoint import orbax_io, synthetic
from gptoss_jax.checkpoint.safetensors_io import CheckpointError
from gptoss_jax.cli import chat as chat_cli
from gptoss_jax.cli import flags as common
from gptoss_jax.cli import main as cli_main
from gptoss_jax.config import PRESETS

FLAGS = flags.FLAGS


@pytest.fixture
def gptoss(capsys, monkeypatch):
    """run('generate', '--flag', ...) -> (exit status, stdout, stderr). Loading the model is an error unless
    allow_load: those refusals must come before the load."""
    def no_load(counter=None):
        raise AssertionError("the model was loaded before the input was checked")

    def run(*argv, allow_load=False):
        FLAGS.unparse_flags()
        try:
            with monkeypatch.context() as m, pytest.raises(SystemExit) as e:
                if not allow_load:
                    m.setattr(common, "load_model", no_load)
                cli_main.run(["gptoss", *argv])
        finally:
            FLAGS.unparse_flags()
        out = capsys.readouterr()
        return e.value.code, out.out, out.err
    return run


def one_error_line(code, err, sub, needle):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"gptoss {sub}: error: "), err
    assert needle in lines[0] and "Traceback" not in err, err


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return synthetic.write_checkpoint(str(tmp_path_factory.mktemp("ux") / "tiny"), PRESETS["tiny"], seed=1)


def test_bad_checkpoints_and_flags_are_one_line(gptoss, tiny_ckpt, tmp_path):
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in os.listdir(tiny_ckpt):
        data = open(os.path.join(tiny_ckpt, name), "rb").read()
        (truncated / name).write_bytes(data[:len(data) // 2] if name.endswith(".safetensors") else data)
    a_file = tmp_path / "weights.bin"
    a_file.write_text("x")
    cases = [
        ([f"--checkpoint={a_file}"], "expected a checkpoint FOLDER"),
        ([f"--checkpoint={tmp_path / 'missing'}"], "no such checkpoint folder"),
        ([f"--checkpoint={truncated}"], "truncated"),
        (["--model=tiny-5b"], "unknown model config 'tiny-5b'"),
        (["--model=tiny", "--mesh=1,2"], "expected three positive sizes"),
        (["--model=tiny", "--mesh=1,64,1"], "uses 64 devices"),
        (["--model=tiny", "--moe_impl=fast"], "unknown MoE kernel 'fast': expected 'auto' or one of"),
        (["--model=tiny", "--num_slots=0"], "num_slots"),
        (["--model=tiny", "--dtype=fp8"], "bfloat16|float32"),
        (["--model=tiny", "--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    ]
    for args, needle in cases:
        code, _, err = gptoss("generate", *args, "--prompt_ids=1,2", f"--synthetic_dir={tmp_path / 'synth'}",
                              "--compilation_cache_dir=off", allow_load=True)
        one_error_line(code, err, "generate", needle)
    assert not os.path.exists(tmp_path / "synth")   # refused before a synthetic checkpoint was written
    for args, needle in [(["--moe_impl=fast"], "unknown MoE kernel 'fast'"),
                         (["--attention_impl=fast"], "unknown attention implementation 'fast'"),
                         (["--modes=train"], "unknown mode/path ['train']")]:
        code, _, err = gptoss("bench", "--model=tiny", "--batch=1", "--context=16", f"--out={tmp_path / 'b.json'}",
                              *args, allow_load=True)
        one_error_line(code, err, "bench", needle)


def test_a_folder_given_as_model_is_a_checkpoint_never_random_weights_of_its_shape(gptoss, tiny_ckpt, tmp_path):
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text(open(os.path.join(tiny_ckpt, "config.json")).read())
    code, _, err = gptoss("generate", f"--model={tmp_path / 'config_only'}", "--prompt_ids=1,2",
                          f"--synthetic_dir={tmp_path / 'synth'}", "--compilation_cache_dir=off", allow_load=True)
    one_error_line(code, err, "generate", "no .safetensors files here")
    assert not os.path.exists(tmp_path / "synth")


def test_requests_are_refused_before_loading(gptoss, tmp_path):
    refused = [
        (["--prompt_ids=" + ",".join(["1"] * 70), "--max_len=64"], "70 tokens do not fit the engine's context of 64"),
        (["--prompt_ids=1,600"], "token id 600 at index 1 is outside the vocabulary [0, 512)"),
        (["--prompt_ids=1", "--top_p=1.5"], "top_p: expected a value in (0.0, 1.0]"),
        (["--prompt_ids=1", "--temperature=-1"], "temperature: expected a value in [0.0, inf)"),
        (["--prompt_ids=1", "--max_len=200000"], "--max_len=200000: expected a value in [1, 131072]"),
        (["--prompt_ids=1", "--chat"], "need a model with the o200k_harmony vocabulary"),
    ]
    for args, needle in refused:
        one_error_line(*gptoss("generate", "--model=tiny", "--compilation_cache_dir=off", *args)[::2], "generate",
                       needle)
    one_error_line(*gptoss("generate", "--model=tiny", "--prompt_ids=1,x")[::2], "generate",
                   "--prompt_ids='1,x': expected comma-separated integer token ids")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": [1, 2], "continuation": [3]}\n\n{"prompt": [1, 2], "continuation": [3, 900]}\n')
    one_error_line(*gptoss("score", "--model=tiny", "--compilation_cache_dir=off", f"--input={pairs}")[::2], "score",
                   f"{pairs}:3 continuation: token id 900 at index 1 is outside the vocabulary")
    pairs.write_text('{"prompt": [1, 2], "continuation": [3, "x"]}\n')
    one_error_line(*gptoss("score", "--model=tiny", "--compilation_cache_dir=off", f"--input={pairs}")[::2], "score",
                   "continuation: expected a list of integer token ids, but it holds 'x'")
    (tmp_path / "out" / "params").mkdir(parents=True)
    one_error_line(*gptoss("convert", "--model=tiny", f"--orbax_dir={tmp_path / 'out'}")[::2], "convert",
                   "params already exists")


def test_chat_input_is_refused_before_loading(gptoss, tmp_path):
    def file(name, value):
        (tmp_path / name).write_text(value if isinstance(value, str) else json.dumps(value))
        return f"@{tmp_path / name}"

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"[\xa3\xff]")
    refused = [
        ([f"--messages={file('empty.json', [])}"], "messages is empty"),
        ([f"--messages={file('str.json', ['hi'])}"], "messages[0] must be an object with 'role' and 'content'"),
        ([f"--messages={file('nocontent.json', [{'role': 'user', 'text': 'hi'}])}"], "(user) has no content"),
        ([f"--messages={file('broken.json', '[{')}"], "--messages: not valid JSON"),
        ([f"--messages=@{tmp_path}"], "cannot read it as text"),
        ([f"--messages=@{binary}"], "cannot read it as text"),
        (["--chat", "--prompt=hi", f"--tools={file('tools.json', tool)}"], "tools must be a list"),
        (["--chat", "--prompt=hi", f"--tools={file('tools2.json', [tool])}", "--tool_choice=get_time"],
         "tool_choice names function 'get_time', which is not among the tools ['get_weather']"),
        (["--chat", "--prompt=hi", "--response_format=" + json.dumps(
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strng"}}})],
         "cannot compile the JSON schema: Invalid type: strng"),
        (["--chat", "--prompt=hi", "--top_k=-1"], "top_k: expected an integer in [0, inf)"),
    ]
    for args, needle in refused:
        one_error_line(*gptoss("generate", "--model=demo", "--compilation_cache_dir=off", *args)[::2], "generate",
                       needle)
    one_error_line(*gptoss("chat", "--model=demo", "--compilation_cache_dir=off", "--response_format={")[::2],
                   "chat", "--response_format: not valid JSON")


def test_help_lists_the_subcommand_and_shared_flags(gptoss):
    code, out, _ = gptoss("generate", "--help")
    assert code == 0 and out.startswith("gptoss generate: sample continuations")
    for flag in ("--prompt_ids", "--num_samples", "--checkpoint", "--mesh", "--temperature", "--response_format"):
        assert f"  {flag}" in out, flag
    assert out.index("  --num_samples:") < out.index("  --checkpoint:") < out.index("  --coordinator_address:")
    code, out, _ = gptoss("score", "-h")
    assert code == 0 and "  --continuation_ids" in out and "  --max_len" in out


def test_interactive_chat_commands_never_reach_the_model(monkeypatch, capsys):
    FLAGS.unparse_flags()
    FLAGS(["gptoss"])
    try:
        monkeypatch.setattr(sys, "stdin", io.StringIO("/effort high\n/effrt low\n/reset\n/quit\n"))
        chat_cli.run_chat(None, None)   # no engine: a command that reached the model would fail
        assert FLAGS.reasoning_effort == "high"
    finally:
        FLAGS.unparse_flags()
    out = capsys.readouterr().out
    assert "[reasoning effort high]" in out and "[unknown command /effrt; commands: /effort" in out
    assert "[conversation cleared]" in out


def test_orbax_folder_that_does_not_match_its_config_is_named(tiny_ckpt, tmp_path):
    model = gptoss_jax.load(tiny_ckpt, show_progress=False)
    out = orbax_io.save(str(tmp_path / "orbax"), model.cfg, model.params)
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    json.dump({**cfg, "hidden_size": 128}, open(os.path.join(out, "config.json"), "w"))
    with pytest.raises(CheckpointError, match=r"weight 'embed' is stored as bfloat16\[512, 64\], config.json "
                                              r"expects bfloat16\[512, 128\]"):
        gptoss_jax.load(out, show_progress=False)
    os.rename(os.path.join(out, "params"), os.path.join(out, "moved"))
    with pytest.raises(CheckpointError, match="no readable Orbax weights"):
        gptoss_jax.load(out, show_progress=False)


def test_bench_on_cpu_defaults_to_a_short_run():
    from gptoss_jax.cli import bench

    FLAGS.unparse_flags()
    try:
        FLAGS(["gptoss"])
        assert bench.case_sizes("cpu") == ([1, 4], [128])
        assert bench.case_sizes("gpu") == ([1, 8, 64, 256], [1024, 8192])
        FLAGS.unparse_flags()
        FLAGS(["gptoss", "--batch=2", "--context=16"])
        assert bench.case_sizes("cpu") == ([2], [16])
    finally:
        FLAGS.unparse_flags()


def test_eval_local_backend_loads_only_when_there_is_work(monkeypatch, tmp_path):
    from evals.backends.base import BackendConfig
    from evals.backends.local import LocalBackend

    def load(*args, **kw):
        raise RuntimeError("loaded")

    monkeypatch.setattr(gptoss_jax.api, "load", load)   # what build_model calls
    config = BackendConfig(kind="local", model="tiny", extra={"synthetic_dir": str(tmp_path)})
    LocalBackend(config).close()       # a resumed sweep with nothing left to run: no load
    with pytest.raises(RuntimeError, match="loaded"):
        LocalBackend(config).describe()   # work to do: it loads


def test_score_prints_valid_json_for_a_failed_pair(gptoss, monkeypatch):
    from gptoss_jax.cli import score as score_cli
    from gptoss_jax.cli import engine_flags
    from gptoss_jax.engine.score import Score

    monkeypatch.setattr(common, "load_model", lambda counter=None: None)
    monkeypatch.setattr(engine_flags, "build_engine", lambda model, **kw: None)
    monkeypatch.setattr(score_cli, "score", lambda *a, **k: [Score(float("nan"), [], False, 1, "device failed")])
    code, out, _ = gptoss("score", "--model=tiny", "--compilation_cache_dir=off", "--prompt_ids=1,2",
                          "--continuation_ids=3", allow_load=True)
    line = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert code == 1 and line["logprob"] is None and line["error"] == "device failed"


@pytest.mark.parametrize("sampling,needle", [
    (dict(max_tokens=0), "max_tokens must be >= 1, got 0"),      # was: silently 'as much as fits'
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_p=0.0), "top_p must be in (0, 1]"),
])
def test_eval_sweep_refuses_bad_sampling_before_running(sampling, needle):
    from evals.backends.base import Sampling
    from evals.runner import SweepConfig, SweepError

    with pytest.raises(SweepError, match=re.escape(needle)):
        SweepConfig(tasks=("humaneval",), sampling=(Sampling(**sampling),)).validate()


def test_eval_exits_nonzero_when_samples_failed(tmp_path):
    import socket
    import subprocess

    with socket.socket() as s:         # a port nobody listens on: every request fails to connect
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "eval", "--tasks=humaneval", "--limit=1", "--repeats=1",
           "--reasoning_efforts=low", f"--base_url=http://127.0.0.1:{port}/v1", "--model=x", "--max_retries=0",
           f"--output_dir={tmp_path / 'run'}", f"--cache_dir={tmp_path / 'cache'}", "--offline", "--noprogress"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 1 and "1 samples failed in this run" in p.stderr, p.stderr[-2000:]
    assert "HumanEval" in p.stdout          # the table and reports are still written


def test_default_slots_fit_a_data_parallel_mesh(monkeypatch):
    from gptoss_jax.cli import engine_flags

    made = []
    monkeypatch.setattr(engine_flags, "Engine", lambda model, **kw: made.append(kw["num_slots"]))
    model = type("Model", (), {"data_parallel": 2})()
    FLAGS.unparse_flags()
    try:
        FLAGS(["gptoss"])
        for need in (1, 3, 4):          # chat needs 1 slot, generate --num_samples=3 three: was refused on 2,4,1
            engine_flags.build_engine(model, num_slots=need)
        FLAGS.unparse_flags()
        FLAGS(["gptoss", "--num_slots=6"])
        engine_flags.build_engine(model, num_slots=1)
    finally:
        FLAGS.unparse_flags()
    assert made == [2, 4, 4, 6]


# ------------------------------------------------------------------------------------ a newcomer's first hour (#14)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")    # absl's 'I1201 00:31:06.161171 1405... file.py:146]'


def test_unknown_subcommand_suggests_the_nearest(gptoss):
    code, _, err = gptoss("genrate")
    assert code == 2 and "unknown subcommand 'genrate'; did you mean 'generate'?" in err
    code, _, err = gptoss("frobnicate")
    assert code == 2 and "did you mean" not in err and "usage: gptoss {demo," in err


def test_chat_with_an_empty_message_is_refused(gptoss, tmp_path):
    for prompt in ("", "   "):
        code, _, err = gptoss("generate", "--chat", f"--prompt={prompt}", f"--synthetic_dir={tmp_path}")
        one_error_line(code, err, "generate", "--prompt is empty")


def test_a_mesh_too_big_for_the_cpu_names_the_cpu_switch(gptoss, tmp_path):
    code, _, err = gptoss("generate", "--model=tiny", "--mesh=1,64,1", "--prompt_ids=1", f"--synthetic_dir={tmp_path}",
                          "--compilation_cache_dir=off", allow_load=True)
    one_error_line(code, err, "generate", "uses 64 devices but 8 are available")
    assert "--cpu_devices" in err and "CUDA_VISIBLE_DEVICES" not in err


def test_max_tokens_above_the_context_is_an_error_not_a_cap(gptoss):
    code, _, err = gptoss("generate", "--model=tiny", "--prompt_ids=1,2,3", "--max_len=64", "--max_tokens=10000000")
    one_error_line(code, err, "generate", "max_tokens: 10000000 tokens do not fit: the prompt's 3 tokens leave room "
                                          "for at most 62")
    code, _, err = gptoss("generate", "--model=tiny", "--prompt_ids=1,2,3", "--max_len=64", "--max_tokens=63")
    one_error_line(code, err, "generate", "at most 62")


def test_requests_without_max_tokens_get_the_models_default_within_the_context():
    from gptoss_jax.engine.requests import (DEFAULT_MAX_TOKENS, SMALL_MODEL_MAX_TOKENS, Limits, Request,
                                            RequestError, SamplingParams, default_max_tokens, validate)

    assert default_max_tokens(PRESETS["demo"]) == SMALL_MODEL_MAX_TOKENS == 64
    assert default_max_tokens(PRESETS["gpt-oss-20b"]) == default_max_tokens(PRESETS["gpt-oss-120b"]) == 32768
    limits = Limits(512, 200, 0, 8, False, default_max_tokens=128)
    got = lambda n, m=None: validate(Request(list(range(1, n + 1)), SamplingParams(max_tokens=m)), limits)[0]  # noqa
    assert got(10).sampling.max_tokens == 128                    # the default
    assert got(150).sampling.max_tokens == 51                    # what the context leaves (200 + 1 - 150)
    assert got(150, 51).sampling.max_tokens == 51
    with pytest.raises(RequestError, match="52 tokens do not fit"):
        got(150, 52)
    big = Limits(512, 131072, 0, 8, False)
    assert validate(Request([1], SamplingParams()), big)[0].sampling.max_tokens == DEFAULT_MAX_TOKENS


def test_eval_tasks_default_to_the_published_max_tokens_and_presets_are_capped(tmp_path):
    from evals.backends.base import BackendConfig
    from evals.backends.local import LocalBackend
    from evals.registry import TASKS

    assert all(spec.default_max_tokens == 32768 for spec in TASKS.values())
    demo = LocalBackend(BackendConfig(kind="local", model="demo", extra={"synthetic_dir": str(tmp_path)}))
    assert demo.cap == 64 and "random weights" in demo.cap_note and "--backend_arg max_tokens=N" in demo.cap_note
    told = LocalBackend(BackendConfig(kind="local", model="demo", extra={"max_tokens": "500"}))
    assert told.cap == 500 and told.cap_note is None


def test_eval_report_says_what_rates_made_the_cost():
    from evals.report import Prices, cost_note

    note = cost_note(Prices(prompt=0.15, completion=0.6, cached=0.014, device_hour=2.5))
    assert "$0.15 / $0.6 / $0.014 per million prompt / completion / cached tokens" in note
    assert "$2.5 per device-hour" in note and "--device_hourly_rate" in note and "--price_prompt" in note


def test_bench_that_refuses_a_model_exits_nonzero(gptoss, monkeypatch, tmp_path):
    from gptoss_jax.cli import bench

    monkeypatch.setattr(bench, "device_memory_budget", lambda: (10 ** 9, "test budget"))
    code, out, err = gptoss("bench", "--model=gpt-oss-120b", f"--out={tmp_path / 'b.json'}", "--noprogress",
                            allow_load=True)
    assert "REFUSED" in out and code == 1, (code, err)
    assert "gptoss bench: 1 refused (gpt-oss-120b: weights exceed the device memory budget)" in err


def _run_cli(*args, stdout=None, timeout=300, **kw):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run([sys.executable, "-m", "gptoss_jax.cli.main", *args], stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT, env=env, **kw)


def test_a_closed_pipe_ends_quietly():
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    p = subprocess.Popen([sys.executable, "-m", "gptoss_jax.cli.main", "generate", "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT, env=env)
    p.stdout.close()                   # the reader (`| head`) is gone before the help is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_dependencies_log_nothing_below_warning_and_warnings_have_no_prefix(tmp_path):
    """A first run writes the synthetic checkpoint (an INFO line of ours) and compiles (jax's INFO lines): none of it
    shows by default; --verbose shows it with absl's prefix."""
    args = ["generate", "--model=tiny", "--prompt_ids=1,2", "--max_tokens=2", "--compilation_cache_dir=off",
            "--noprogress"]
    p = _run_cli(*args, f"--synthetic_dir={tmp_path / 'quiet'}")
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stderr.splitlines()
    assert not [ln for ln in lines if ABSL_PREFIX.match(ln) or "INFO" in ln], p.stderr
    assert "\r" not in p.stderr        # not a terminal: no redrawn lines
    p = _run_cli(*args, f"--synthetic_dir={tmp_path / 'verbose'}", "--verbose")
    assert p.returncode == 0 and any(ABSL_PREFIX.match(ln) for ln in p.stderr.splitlines()), p.stderr[-2000:]


def test_launcher_finds_the_entry_point_or_says_where_it_looked(tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "launch"))
    try:
        import local as launcher
    finally:
        sys.path.pop(0)
    bin_dir, empty = tmp_path / "venv" / "bin", tmp_path / "empty"
    bin_dir.mkdir(parents=True)
    empty.mkdir()
    tool = bin_dir / "gptoss"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    python = str(bin_dir / "python")
    # not on PATH: found beside the Python running the launcher (a virtual environment that is not activated)
    assert launcher.resolve_command(["gptoss", "demo"], path=str(empty), python=python,
                                    venv_bin=str(empty)) == [str(tool), "demo"]
    # or in the repository's .venv/bin
    assert launcher.resolve_command(["gptoss", "demo"], path=str(empty), python=str(empty / "python"),
                                    venv_bin=str(bin_dir)) == [str(tool), "demo"]
    # nowhere as a script but importable: run as a module
    assert launcher.resolve_command(["gptoss", "demo"], path=str(empty), python="/py/python",
                                    venv_bin=str(empty)) == ["/py/python", "-m", "gptoss_jax.cli.main", "demo"]
    with pytest.raises(launcher.CommandNotFound, match="cannot find the command 'nope': not on PATH, not in"):
        launcher.resolve_command(["nope"], path=str(empty), python=python, venv_bin=str(empty))
    assert launcher.main(["-n", "2", "--", "no-such-program-here"]) == 127
    err = capsys.readouterr().err
    assert err.startswith("launch/local.py: cannot find the command 'no-such-program-here'") and "Traceback" not in err
