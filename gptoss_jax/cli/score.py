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
from gptoss_jax.engine.score import score_requests
from gptoss_jax.cli import engine_flags as eflags

flags.DEFINE_string("continuation", None, "Continuation text to score after the prompt.")
flags.DEFINE_string("continuation_ids", None, "Continuation as comma-separated token ids.")
flags.DEFINE_string("input", None, "JSON-lines file of {\"prompt\": ..., \"continuation\": ...} (text or id lists).")
FLAGS = flags.FLAGS


def _ids(value, enc, where: str) -> list[int]:
    if isinstance(value, list):
        bad = [x for x in value if isinstance(x, bool) or not isinstance(x, int)]
        if bad:
            raise app.UsageError(f"{where}: expected a list of integer token ids, but it holds {bad[0]!r}")
        return value
    if isinstance(value, str):
        return eflags.encode(enc if enc is not None else eflags.load_tokenizer(), value)
    raise app.UsageError(f"{where}: expected text or a list of token ids, got {type(value).__name__}")


def _pairs(enc) -> list[tuple[str, list[int], list[int]]]:
    """(where the pair comes from, prompt ids, continuation ids) for each pair to score."""
    if FLAGS.input is not None:
        if FLAGS.prompt is not None or FLAGS.prompt_ids is not None:
            raise app.UsageError("give --input or a single --prompt/--prompt_ids pair, not both")
        pairs = []
        try:
            with open(FLAGS.input, encoding="utf-8") as f:
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
                    pairs.append((f"{FLAGS.input}:{n}", _ids(item["prompt"], enc, f"{FLAGS.input}:{n} prompt"),
                                  _ids(item["continuation"], enc, f"{FLAGS.input}:{n} continuation")))
        except (OSError, UnicodeDecodeError) as e:
            raise app.UsageError(f"--input: cannot read {FLAGS.input} as text ({e})") from None
        return pairs
    prompt = eflags.prompt_from_flags(enc)
    if (FLAGS.continuation is None) == (FLAGS.continuation_ids is None):
        raise app.UsageError("give exactly one of --continuation (text) or --continuation_ids (token ids)")
    cont = (_ids(FLAGS.continuation, enc, "--continuation") if FLAGS.continuation is not None
            else eflags.parse_ids(FLAGS.continuation_ids, "continuation_ids"))
    return [("--prompt/--continuation", prompt, cont)]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    enc = eflags.try_tokenizer()
    pairs = _pairs(enc)
    if not pairs:
        raise app.UsageError(f"nothing to score: {FLAGS.input} holds no pairs" if FLAGS.input else "nothing to score")
    names, prompts, continuations = ([pair[i] for pair in pairs] for i in range(3))
    try:  # refuse bad pairs before the long load
        score_requests(prompts, continuations, eflags.limits(common.model_config(), detokenize=False), names)
    except RequestError as e:
        raise eflags.request_error(e) from None
    eflags.setup_compilation_cache()
    model = common.load_model()
    engine = eflags.build_engine(model, num_slots=min(8, len(pairs)))
    scores = score(engine, prompts, continuations, progress=FLAGS.progress)
    for s in scores:
        print(json.dumps({"logprob": None if s.error else s.logprob,  # a failed pair's NaN is not JSON
                          "num_tokens": s.num_tokens, "greedy": s.greedy, "token_logprobs": s.token_logprobs,
                          **({"error": s.error} if s.error else {})}))
    if any(s.error for s in scores):
        sys.exit(1)
