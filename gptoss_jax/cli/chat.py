"""gptoss chat: an interactive session that streams the model's tokens as they are generated.

Each line you type continues the session (raw text with the harmony tokenizer, or comma-separated token ids without
it); the model's reply is appended, so the context grows turn by turn up to --max_len. Commands: /reset, /quit.
(Harmony chat rendering plugs in here once gptoss_jax.harmony provides it.)
"""
import sys

from absl import app, flags

from gptoss_jax.cli import flags as common
from gptoss_jax.engine import Request, RequestError
from gptoss_jax.engine import flags as eflags

FLAGS = flags.FLAGS


def _read(prompt: str, stream_in) -> str | None:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = stream_in.readline()
    return None if line == "" else line.rstrip("\n")


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
        shown, out, rid = "", [], None
        try:
            for ev in engine.stream(Request(history + ids, sampling)):
                rid = ev.request_id
                if ev.token_id < 0:
                    continue
                out.append(ev.token_id)
                if enc is None:
                    sys.stdout.write(("" if len(out) == 1 else ",") + str(ev.token_id))
                else:
                    text = enc.decode(out)
                    if not text.endswith("\ufffd"):
                        sys.stdout.write(text[len(shown):])
                        shown = text
                sys.stdout.flush()
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
    eflags.setup_compilation_cache()
    model = common.load_model()
    engine = eflags.build_engine(model, num_slots=1, detokenize=enc.decode if enc is not None else None)
    mode = "text" if enc is not None else "token ids (comma-separated; no tokenizer installed)"
    print(f"gptoss chat: {model.cfg.name}, input as {mode}; /reset, /quit")
    run(engine, enc, eflags.sampling_params(model.cfg.vocab_size))
