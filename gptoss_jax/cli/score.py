"""gptoss score: log-likelihood of continuations given prompts (the eval harness's scoring, as a command).

One pair from flags (--prompt or --prompt_ids, with --continuation or --continuation_ids), or many from --input,
a JSON-lines file of {"prompt": text or [ids], "continuation": text or [ids]}. Prints one JSON line per pair:
{"logprob": sum, "num_tokens", "greedy": every token was the argmax, "token_logprobs"}.
"""
import json
import sys

from absl import app, flags

from gptoss_jax.cli import flags as common
from gptoss_jax.engine import RequestError, score
from gptoss_jax.cli import engine_flags as eflags

flags.DEFINE_string("continuation", None, "Continuation text to score after the prompt.")
flags.DEFINE_string("continuation_ids", None, "Continuation as comma-separated token ids.")
flags.DEFINE_string("input", None, "JSON-lines file of {\"prompt\": ..., \"continuation\": ...} (text or id lists).")
FLAGS = flags.FLAGS


def _ids(value, enc, where: str) -> list[int]:
    if isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return value
    if isinstance(value, str):
        return eflags.encode(enc if enc is not None else eflags.load_tokenizer(), value)
    raise app.UsageError(f"{where}: expected text or a list of token ids, got {type(value).__name__}")


def _pairs(enc) -> list[tuple[list[int], list[int]]]:
    if FLAGS.input is not None:
        if FLAGS.prompt is not None or FLAGS.prompt_ids is not None:
            raise app.UsageError("give --input or a single --prompt/--prompt_ids pair, not both")
        pairs = []
        try:
            with open(FLAGS.input) as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise app.UsageError(f"{FLAGS.input}:{n}: not JSON ({e})") from None
                    if not isinstance(item, dict) or "prompt" not in item or "continuation" not in item:
                        raise app.UsageError(f"{FLAGS.input}:{n}: expected an object with 'prompt' and "
                                             f"'continuation'")
                    pairs.append((_ids(item["prompt"], enc, f"{FLAGS.input}:{n} prompt"),
                                  _ids(item["continuation"], enc, f"{FLAGS.input}:{n} continuation")))
        except OSError as e:
            raise app.UsageError(f"--input: cannot read {FLAGS.input} ({e})") from None
        return pairs
    prompt = eflags.prompt_from_flags(enc)
    if (FLAGS.continuation is None) == (FLAGS.continuation_ids is None):
        raise app.UsageError("give exactly one of --continuation (text) or --continuation_ids (token ids)")
    cont = (_ids(FLAGS.continuation, enc, "--continuation") if FLAGS.continuation is not None
            else eflags.parse_ids(FLAGS.continuation_ids, "continuation_ids"))
    return [(prompt, cont)]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    enc = eflags.try_tokenizer()
    pairs = _pairs(enc)
    if not pairs:
        raise app.UsageError("nothing to score")
    eflags.setup_compilation_cache()
    model = common.load_model()
    engine = eflags.build_engine(model, num_slots=min(8, len(pairs)))
    try:
        scores = score(engine, [p for p, _ in pairs], [c for _, c in pairs], progress=FLAGS.progress)
    except RequestError as e:
        raise eflags.request_error(e) from None
    for s in scores:
        print(json.dumps({"logprob": s.logprob, "num_tokens": s.num_tokens, "greedy": s.greedy,
                          "token_logprobs": s.token_logprobs, **({"error": s.error} if s.error else {})}))
    if any(s.error for s in scores):
        sys.exit(1)
