"""The README's commands, run the way a newcomer runs them: in a copy of the repository's files (a fresh clone's view:
no build outputs, no test settings), in bash, after the README's own `source .venv/bin/activate`, nothing else typed.

Every command of the README's bash blocks is one of: a make target (checked with `make -n`), the activation line,
a command on the synthetic demo model (run, and its output checked), or a command on a real checkpoint, an endpoint
or a GPU (its flags parsed by the subcommand it names, every file it names present). The Python snippet runs
verbatim. `gptoss bench` alone is shortened by flags appended to its line (SHORTER: fewer cases of the same code);
its full run is timed by hand (see the issue's report).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ACTIVATE = Path(sys.executable).parent / "activate"
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M)
NEEDS_MORE = ("/models/", "--base_url", "--model=gpt-oss-120b")   # a real checkpoint, an endpoint, a GPU
SHORTER = {"gptoss bench": "--batch=1 --context=32 --modes=decode"}   # CPU default: 8 cases of Pallas' interpreter


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def bash_commands() -> list[str]:
    """Every command line of the README's bash blocks, comments dropped."""
    out = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():      # a line continued with a backslash is one
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def runnable(cmd: str) -> bool:
    """Runs to completion here: on the demo model, needing no endpoint, GPU or real checkpoint (`gptoss serve` runs
    until it is stopped: its flags are checked with the rest)."""
    return (cmd.startswith(("gptoss ", "python ")) and not cmd.startswith("gptoss serve")
            and not any(s in cmd for s in NEEDS_MORE))


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's files as a clone has them (tracked and not ignored), without .venv or caches of this one."""
    dest = tmp_path_factory.mktemp("clone") / "gptoss-jax"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def shell(cmd: str, cwd: Path, *, stdin: str = "", timeout: int = 600) -> subprocess.CompletedProcess:
    """`cmd` in bash after the README's activation line (this test's environment stands in for the clone's .venv)."""
    if not ACTIVATE.exists():
        pytest.skip(f"{ACTIVATE} is missing: the tests do not run from a virtual environment")
    test_settings = ("XLA_FLAGS", "VIRTUAL_ENV", "PYTHONPATH", "GPTOSS_COMPILATION_CACHE")
    env = {k: v for k, v in os.environ.items() if k not in test_settings}
    return subprocess.run(["bash", "-c", f"source {shlex.quote(str(ACTIVATE))} && {cmd}"], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env)


def check_quiet(p: subprocess.CompletedProcess, cmd: str) -> None:
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    for stream in (p.stdout, p.stderr):
        assert not ABSL_PREFIX.search(stream), f"{cmd}: a log line with absl's prefix\n{stream[-3000:]}"
        assert "[Gloo]" not in stream and " INFO " not in stream, f"{cmd}: a dependency's log line\n{stream[-3000:]}"
    assert "\r" not in p.stderr, f"{cmd}: progress redrawn into a pipe"
    assert "Traceback" not in p.stderr


def test_the_readme_lists_the_commands_this_test_knows():
    cmds = bash_commands()
    assert cmds[:2] == ["make demo", "make test"] and "source .venv/bin/activate" in cmds
    assert "python launch/local.py -n 2 --cpu_devices 4 -- gptoss demo --mesh 1,4,2" in cmds
    assert sum(map(runnable, cmds)) >= 7
    for cmd in cmds:
        assert cmd.startswith(("make ", "source ", "gptoss ", "python launch/")), f"unclassified README line: {cmd}"


def test_make_targets_and_the_environment_they_create(clone):
    for cmd in bash_commands():
        if cmd.startswith("make "):
            p = subprocess.run(["make", "-n", *cmd.split()[1:]], cwd=clone, capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
            assert ".venv/bin/" in p.stdout
    assert "VENV ?= .venv" in (clone / "Makefile").read_text()     # what `source .venv/bin/activate` activates


def test_commands_on_real_models_parse_with_the_subcommand_they_name(clone):
    """Flags are parsed by the subcommand's own module alone (as `gptoss SUB` loads it): a renamed or removed flag,
    or a file the command names that is gone, fails here."""
    by_sub: dict[str, list[list[str]]] = {}
    for cmd in bash_commands():
        if cmd.startswith("gptoss ") and not runnable(cmd):
            words = shlex.split(cmd)
            by_sub.setdefault(words[1], []).append(words[2:])
            for w in words[2:]:
                if w.startswith("--config="):
                    assert (clone / w.split("=", 1)[1]).is_file(), cmd
    assert {"chat", "generate", "score", "eval", "bench", "convert", "serve"} <= set(by_sub)
    script = ("import importlib, json, sys\n"
              "from absl import flags\n"
              "from gptoss_jax.cli import console, distributed_flags\n"
              "from gptoss_jax.cli.main import SUBCOMMANDS\n"
              "sub, argsets = sys.argv[1], json.loads(sys.argv[2])\n"
              "importlib.import_module(SUBCOMMANDS[sub])\n"
              "for args in argsets:\n"
              "    flags.FLAGS.unparse_flags()\n"
              "    flags.FLAGS(['gptoss ' + sub] + args)\n"
              "print('parsed', len(argsets))\n")
    for sub, argsets in by_sub.items():
        p = shell(f"python -c {shlex.quote(script)} {sub} {shlex.quote(json.dumps(argsets))}", clone, timeout=300)
        assert p.returncode == 0 and f"parsed {len(argsets)}" in p.stdout, f"gptoss {sub}: {p.stderr[-2000:]}"


def test_python_blocks_that_need_a_server_are_python():
    """The client snippets talk to `gptoss serve` (the server's tests drive that loop); here they must compile."""
    later = code_blocks("python")[1:]
    for block in later:
        assert "base_url=" in block, block
        compile(block, "README.md", "exec")


def test_the_python_snippet_runs_verbatim(clone):
    snippet = code_blocks("python")[0]
    (clone / "snippet.py").write_text(snippet)
    p = shell("python snippet.py", clone, timeout=900)
    check_quiet(p, "the README's Python snippet")
    finish, tokens = p.stdout.split()[:2]
    assert finish in ("stop", "length") and 0 < int(tokens) <= 64        # the demo model's default limit


def _checks(cmd: str, p: subprocess.CompletedProcess) -> None:
    out = p.stdout
    if "gptoss demo" in cmd:
        assert "greedy tokens equal the plain forward's argmax at every step: True" in out
        assert "parses as JSON and fits the schema: True" in out and "every stage is real" in out
        assert "[raw, not harmony-formed]" in out or "[answer]" in out
    elif cmd.startswith("gptoss chat"):
        assert re.search(r"\[\d+ tokens, (length|stop)", out), out[-2000:]
    elif cmd.startswith("gptoss generate"):
        assert "[answer] {" in out or "[raw, not harmony-formed]" in out, out[-2000:]
    elif cmd.startswith("gptoss score"):
        assert json.loads(out.strip().splitlines()[-1])["num_tokens"] == 1
    elif cmd.startswith("gptoss eval"):
        assert len(re.findall(r"^HumanEval .* (low|medium|high) ", out, re.M)) == 3, out
        assert "per million prompt" in out and "random weights" in p.stderr
    elif cmd.startswith("gptoss bench"):
        assert "results: runs/bench-" in out


@pytest.mark.parametrize("cmd", [c for c in bash_commands() if runnable(c)])
def test_commands_on_the_demo_model_run_as_written(clone, cmd):
    run = cmd
    for head, extra in SHORTER.items():
        if head in cmd:
            run = f"{cmd} {extra}"
    stdin = "What is 2+2?\n" if cmd.startswith("gptoss chat") else ""
    p = shell(run, clone, stdin=stdin, timeout=900)
    check_quiet(p, run)
    _checks(cmd, p)
