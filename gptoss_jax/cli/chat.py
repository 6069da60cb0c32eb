"""gptoss chat: an interactive harmony chat that streams the model's answer (and, unless --noshow_reasoning, its
chain of thought) as it is generated.

Each line you type is a user message; the conversation is re-rendered in harmony each turn (earlier chain of thought
dropped, as the format prescribes) up to --max_len tokens. Commands: /reset, /quit, /effort low|medium|high,
/system TEXT. With --raw (or without the harmony vocabulary) each line instead continues a raw token stream.
"""
import re
import sys

from absl import app, flags

from gptoss_jax import chat as chat_lib
from gptoss_jax.cli import chat_flags, console
from gptoss_jax.cli import flags as common
from gptoss_jax.engine import Request, RequestError
from gptoss_jax.harmony.constants import REASONING_EFFORTS, VOCAB_SIZE
from gptoss_jax.cli import engine_flags as eflags

flags.DEFINE_bool("raw", False, "Continue a raw token stream instead of a harmony chat.")
FLAGS = flags.FLAGS
COMMANDS = "/effort low|medium|high, /system TEXT, /reset, /quit"


def _read(prompt: str, stream_in) -> str | None:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = stream_in.readline()
    console.line_done()
    return None if line == "" else line.rstrip("\n")


def run_chat(engine, sampling, stream_in=None, tools=()) -> None:
    """Harmony chat: OpenAI-style messages accumulate; every turn renders, streams and parses one answer (with
    built-in tools: runs the tool loop, the model's calls executed between its rounds)."""
    stream_in = stream_in or sys.stdin
    messages: list[dict] = []
    while True:
        line = _read("> ", stream_in)
        if line is None or line.strip() == "/quit":
            sys.stdout.write("\n")
            return
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "/reset":
            messages = []
            print("[conversation cleared]")
            continue
        if cmd == "/effort":
            if arg not in REASONING_EFFORTS:
                print(f"[usage: /effort {'|'.join(REASONING_EFFORTS)}]")
            else:
                FLAGS.reasoning_effort = arg
                print(f"[reasoning effort {arg}]")
            continue
        if cmd == "/system":
            FLAGS.system = arg or None
            print("[developer instructions " + ("set]" if arg else "cleared]"))
            continue
        if re.fullmatch(r"/[A-Za-z?]+", cmd):  # a mistyped command is not a message (a path like /tmp/x is)
            print(f"[unknown command {cmd}; commands: {COMMANDS}]")
            continue
        if not line.strip():
            continue
        turn = messages + [{"role": "user", "content": line}]
        try:
            if tools:  # the model may call them: run each call here and let it continue
                looped = chat_flags.run_tool_turn(engine, turn, sampling, tools)
                messages = turn + looped.messages
                print(f"[{looped.rounds} rounds, {len(looped.calls)} tool calls, {looped.finish_reason}]")
                continue
            res = chat_flags.print_stream(engine, chat_flags.chat_request(turn, sampling))
        except (RequestError, ValueError) as e:
            print(f"[{e}; /reset clears the conversation]")
            continue
        if res.finish_reason == "error":
            print(f"[error: {res.error}]")
            continue
        messages = turn + [res.to_message()]
        print(f"[{res.completion_tokens} tokens, {res.finish_reason}; prompt {res.prompt_tokens}/{engine.max_len}]")


def run(engine, enc, sampling, stream_in=None) -> None:
    stream_in = stream_in or sys.stdin
    history: list[int] = []
    while True:
        line = _read("> ", stream_in)
        if line is None or line.strip() == "/quit":
            sys.stdout.write("\n")
            return
        if line.strip() == "/reset":
            history = []
            print("[context cleared]")
            continue
        if not line.strip():
            continue
        try:
            ids = (eflags.encode(enc, line + "\n") if enc is not None
                   else [int(x) for x in line.split(",") if x.strip()])
        except ValueError:
            print("[without a tokenizer, type comma-separated token ids, e.g. 1,2,3]")
            continue
        try:
            rid, _ = eflags.print_token_stream(engine, Request(history + ids, sampling), enc)
        except RequestError as e:
            print(f"[{e}; /reset clears the context]")
            continue
        res = engine.result(rid)
        sys.stdout.write("\n")
        if res.finish_reason == "error":
            print(f"[error: {res.error}]")
            continue
        history += ids + res.token_ids
        print(f"[{res.completion_tokens} tokens, {res.finish_reason}; context {len(history)}/{engine.max_len}]")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    enc = eflags.try_tokenizer()
    cfg = common.model_config()
    sampling = eflags.sampling_params(cfg.vocab_size)
    harmony_chat = not FLAGS.raw and enc is not None and cfg.vocab_size == VOCAB_SIZE
    if harmony_chat:  # the flags' chat settings and sampling, checked on a probe turn before the long load
        tools = chat_flags.builtin_tools()
        probe = chat_flags.chat_request([{"role": "user", "content": "hello"}], sampling)
        try:
            eflags.check_before_loading(cfg, [chat_lib.to_engine_request(probe, max_len=FLAGS.max_len)])
        except ValueError as e:  # ChatInputError / ConstraintError name the problem
            raise app.UsageError(f"bad chat flags: {e}") from None
    else:
        eflags.check_before_loading(cfg, [Request([0], sampling)], detokenize=enc is not None)
    eflags.setup_compilation_cache()
    model = common.load_model()
    engine = eflags.build_engine(model, num_slots=1, detokenize=enc.decode if enc is not None else None)
    if harmony_chat:
        print(f"gptoss chat: {model.cfg.name}, harmony chat, reasoning effort {FLAGS.reasoning_effort}; "
              f"{COMMANDS}")
        return run_chat(engine, sampling, tools=tools)
    mode = "text" if enc is not None else "token ids (comma-separated; no tokenizer installed)"
    print(f"gptoss chat: {model.cfg.name}, raw continuation, input as {mode}; /reset, /quit")
    run(engine, enc, sampling)
