"""What users see while they wait: progress bars (redrawn on a terminal, plain lines elsewhere), the compile notice,
request and scoring progress, Gloo's stdout lines dropped, and chat answers streamed token by token."""
import io
import os
import re
import subprocess
import sys
import time

import pytest

from gptoss_jax import progress
from gptoss_jax.progress import CLEAR_LINE, CompileNotice, Progress, RequestProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_redraws_on_a_terminal_and_writes_plain_lines_elsewhere(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tty, log = Terminal(), io.StringIO()
    bars = [Progress(10, "eval", unit=" samples", stream=s, plain_interval=10.0) for s in (tty, log)]
    for step in range(10):
        clock[0] += 3.0                  # a sample every 3 s
        for bar in bars:
            bar.update(1, note=f"{(step + 1) * 100:,} tokens")
    for bar in bars:
        bar.close()
    assert "\r" not in log.getvalue()
    plain = log.getvalue().splitlines()
    # every 10 s (at 12, 24 s) and at close, never per update
    assert len(plain) == 3 and plain[-1].startswith("eval: 100.0% 10/10 samples [30s elapsed, ETA 0s] 1,000 tokens")
    assert plain[0].startswith("eval:  40.0% 4/10 samples [12s elapsed, ETA 18s] 400 tokens")
    frames = tty.getvalue().split(CLEAR_LINE)
    assert len(frames) == 12 and tty.getvalue().endswith("\n")   # every update redraws, close ends the line


def test_request_progress_counts_tokens_as_they_come_and_scoring_counts_pairs():
    from gptoss_jax.engine.requests import Request, Result, SamplingParams, TokenEvent

    log = io.StringIO()
    gen = RequestProgress([Request([1], SamplingParams(max_tokens=5))] * 2, enabled=True, stream=log)
    gen.step([TokenEvent("a", 0, 7), TokenEvent("b", 0, 8), TokenEvent("b", 1, -1, finish_reason="stop")], [])
    assert gen.tokens == 2 and gen.bar.done == 0       # tokens move before any request finishes
    gen.close()
    assert log.getvalue().startswith("generate:   0.0% 0/2 requests") and "2 tokens generated" in log.getvalue()

    log = io.StringIO()
    pairs = [Request([1, 2, 3], SamplingParams(temperature=0.0, max_tokens=0), score_from=1)] * 2
    score = RequestProgress(pairs, enabled=True, stream=log)
    score.step([], [Result("x", 3, 0, [], "length", prompt_logprobs=[-1.0, -2.0])])
    score.close()
    line = log.getvalue()
    assert line.startswith("score:  50.0% 1/2 pairs") and "2 tokens scored" in line and "generate" not in line


def _fake_compile(notice, fun="step", hit=False, seconds=0.0):
    notice._on_scalar(progress._BACKEND_COMPILE, time.time(), fun_name=fun)
    if hit:
        notice._on_event(progress._CACHE_HIT)
    notice.tick()
    time.sleep(seconds)
    notice.tick()
    notice._on_duration(progress._BACKEND_COMPILE, seconds, fun_name=fun)


def test_compile_notice_on_a_terminal_is_one_line_cleared_when_compiling_ends():
    tty = Terminal()
    notice = CompileNotice(lambda: "compiling (first run; cached afterwards)", stream=tty, after_s=0.05)
    _fake_compile(notice, seconds=0.1)
    out = tty.getvalue()
    assert out.startswith(CLEAR_LINE + "compiling (first run; cached afterwards): 0s") and out.endswith(CLEAR_LINE)
    assert "\n" not in out
    # a streamed answer in the middle of a line is never overwritten
    tty = Terminal()
    notice = CompileNotice(lambda: "compiling", stream=tty, after_s=0.0, can_draw=lambda: False)
    _fake_compile(notice, seconds=0.05)
    assert tty.getvalue() == ""


def test_compile_notice_in_a_log_says_when_it_starts_and_how_long_it_took():
    log = io.StringIO()
    notice = CompileNotice(lambda: "compiling (first run; cached afterwards)", stream=log, after_s=0.05, gap_s=0.0)
    _fake_compile(notice, seconds=0.1)
    time.sleep(0.01)
    notice.tick()                      # past the gap: the wait is over
    assert log.getvalue().splitlines()[0] == "compiling (first run; cached afterwards) ..."
    took = re.fullmatch(r"compiled in (\d+\.\d)s", log.getvalue().splitlines()[1])
    assert took and 0.1 <= float(took.group(1)) < 10 and len(notice.waits) == 1     # the 0.1 s compile, on a busy CPU
    # a program loaded from the persistent cache is no wait, and a quick compile says nothing
    log = io.StringIO()
    notice = CompileNotice(lambda: "compiling", stream=log, after_s=0.05, gap_s=0.0)
    _fake_compile(notice, hit=True, seconds=0.1)
    _fake_compile(notice, fun="quick")
    notice.tick()
    assert log.getvalue() == "" and notice.waits == []


def test_compile_notice_hears_jax_compile():
    import jax
    import numpy as np

    log = io.StringIO()
    notice = CompileNotice(lambda: "compiling", stream=log, after_s=0.0, tick_s=3600).install()
    try:
        scale = float(np.random.default_rng().random())     # a program no cache holds
        jax.jit(lambda x: x * scale + 1.0)(np.ones(3, np.float32)).block_until_ready()
    finally:
        notice.uninstall()
    assert notice._last_end > 0           # a backend compile started and ended while it listened


def test_gloo_lines_on_the_c_stdout_are_dropped_and_the_rest_kept_in_order():
    script = ("import os, sys; from gptoss_jax.distributed.stdout_filter import StdoutFilter; f = StdoutFilter(); "
              "print('python line 1', flush=True); "
              "os.write(1, b'[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer ranks "
              "is : 1\\nC library line\\n'); print('python line 2'); f.close()")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "[Gloo]" not in p.stdout and set(lines) == {"python line 1", "C library line", "python line 2"}


# ------------------------------------------------------------------------------------ streamed chat display
class Writes(io.StringIO):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def write(self, s):
        self.calls += 1
        return super().write(s)


class ScriptedEngine:
    """Streams a fixed completion, one TokenEvent at a time."""

    def __init__(self, tokens):
        from gptoss_jax.engine.requests import Limits

        self.tokens, self.limits, self.max_len = tokens, Limits(201088, 4096, 0, 8, True, 128), 4096

    def stream(self, request):
        from gptoss_jax.engine.requests import TokenEvent

        for i, t in enumerate(self.tokens):
            yield TokenEvent("r", i, t, finish_reason="stop" if i == len(self.tokens) - 1 else None)

    def result(self, rid):
        from gptoss_jax.engine.requests import Result

        return Result("r", 10, len(self.tokens), list(self.tokens), "stop")


@pytest.fixture
def show_chat():
    from absl import flags

    from gptoss_jax.cli import chat_flags
    from gptoss_jax.chat import ChatRequest

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["gptoss"])

    def show(tokens):
        out = Writes()
        done = chat_flags.print_stream(ScriptedEngine(tokens), ChatRequest([{"role": "user", "content": "hi"}]),
                                       out=out)
        return out, done
    yield show
    flags.FLAGS.unparse_flags()


def test_a_harmony_answer_streams_with_its_channels_labelled(show_chat):
    from gptoss_jax.harmony import get_encoding

    enc = get_encoding()
    text = ("<|channel|>analysis<|message|>The user asks for the capital.<|end|><|start|>assistant"
            "<|channel|>final<|message|>Paris is the capital.<|return|>")
    out, done = show_chat(enc.encode(text, allowed_special="all"))
    assert out.getvalue() == "[thinking] The user asks for the capital.\n[answer] Paris is the capital.\n"
    assert done.content == "Paris is the capital." and out.calls > 6      # piece by piece, not at the end


def test_text_that_is_no_harmony_streams_raw_from_its_first_token(show_chat):
    from gptoss_jax.harmony import get_encoding

    tokens = get_encoding().encode(" valida uzman Characteristic recommended ricord da Nada california")
    out, _ = show_chat(tokens)
    assert out.getvalue().startswith("[raw, not harmony-formed]  valida uzman")
    assert out.calls >= len(tokens)       # one write a token: streamed, not printed at the end
