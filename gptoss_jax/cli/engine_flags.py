"""absl flags shared by `gptoss generate`, `chat` and `score`, and the one way they become an Engine and sampling
parameters. Model flags (--checkpoint, --model, --mesh, --dtype, ...) come from gptoss_jax.cli.flags."""
from __future__ import annotations

from absl import app, flags

from gptoss_jax.engine.compilation import enable_persistent_cache
from gptoss_jax.engine.requests import (Limits, Request, RequestError, SamplingParams, default_max_tokens,
                                        validate)
from gptoss_jax.engine.scheduler import Engine
from gptoss_jax.harmony.constants import STOP_TOKENS, VOCAB_SIZE

FLAGS = flags.FLAGS

# ------------------------------------------------------------------------------------------------------ engine
flags.DEFINE_integer("max_len", 4096, "Context of every slot (prompt + generated tokens), at most 131072. The KV "
                     "cache holds num_slots * max_len tokens.")
flags.DEFINE_integer("num_slots", None, "Requests decoded together (default: what the command needs, at most 8).",
                     lower_bound=1)
flags.DEFINE_integer("prefill_chunk", 512, "Prefill chunk length (largest prefill bucket).")
flags.DEFINE_integer("min_prefill_chunk", 32, "Smallest prefill bucket.")
flags.DEFINE_integer("decode_steps", 8, "Tokens per slot a decode call produces before returning to the host.")
flags.DEFINE_integer("max_top_logprobs", 20, "Most top_logprobs a request may ask for.")
flags.DEFINE_float("constrained_slowdown", 1.25, "The most a request with structured output (one token a round) may "
                   "slow the others' decoding: rounds while one decodes run the fewest steps that keep to it, "
                   "measured as they run. 0 = one-step rounds (fastest for the constrained request).")
flags.DEFINE_string("compilation_cache_dir", None, "Persistent XLA compilation cache (a second start loads instead "
                    "of compiling). Default: $GPTOSS_COMPILATION_CACHE, else ~/.cache/gptoss_jax/xla; 'off' "
                    "disables it.")

# ---------------------------------------------------------------------------------------------------- sampling
flags.DEFINE_float("temperature", 1.0, "Sampling temperature; 0 = greedy.")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling: keep the smallest set of tokens reaching this probability.")
flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0 = off).")
flags.DEFINE_float("min_p", 0.0, "Keep tokens at least min_p times as likely as the most likely one (0 = off).")
flags.DEFINE_float("presence_penalty", 0.0, "OpenAI presence penalty, [-2, 2].")
flags.DEFINE_float("frequency_penalty", 0.0, "OpenAI frequency penalty, [-2, 2].")
flags.DEFINE_float("repetition_penalty", 1.0, "HF repetition penalty (1 = off).")
flags.DEFINE_string("logit_bias", "", "Logit bias 'id:bias,id:bias' (bias in [-100, 100]).")
flags.DEFINE_integer("sampling_seed", None, "Seed of the sampling noise (default: drawn from --seed).")
flags.DEFINE_multi_string("stop", [], "Stop string (repeatable); needs the tokenizer.")
flags.DEFINE_string("stop_token_ids", "harmony", "Comma-separated stop token ids; 'harmony' = <|return|>, <|end|>, "
                    "<|call|> when the vocabulary is o200k_harmony's (none otherwise); '' = none.")
flags.DEFINE_integer("max_tokens", None, "Tokens to generate at most (default: the model's, 32768 for gpt-oss models "
                     "and 64 for the small demo and test presets, within what --max_len leaves after the prompt; a "
                     "value above that is an error).", lower_bound=1)
flags.DEFINE_bool("logprobs", False, "Report the log-probability of every generated token.")
flags.DEFINE_integer("top_logprobs", 0, "Also report this many most likely alternatives per token.")

# ------------------------------------------------------------------------------------------------------ inputs
flags.DEFINE_string("prompt", None, "Prompt text (tokenized with the harmony tokenizer; <|special|> tokens allowed).")
flags.DEFINE_string("prompt_ids", None, "Prompt as comma-separated token ids, e.g. 1,2,3.")
flags.DEFINE_bool("json", False, "Print JSON (token ids, logprobs, finish reasons, timings) instead of text.")

MAX_STOP_TOKEN_IDS = 8


def parse_ids(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise app.UsageError(f"--{what}={text!r}: expected comma-separated integer token ids, e.g. 1,2,3") from None


def prompt_from_flags(enc) -> list[int]:
    """--prompt (text, needs the tokenizer) or --prompt_ids; exactly one."""
    if (FLAGS.prompt is None) == (FLAGS.prompt_ids is None):
        raise app.UsageError("give exactly one of --prompt (text) or --prompt_ids (token ids, e.g. 1,2,3)")
    if FLAGS.prompt is not None:
        return encode(enc if enc is not None else load_tokenizer(), FLAGS.prompt)
    return parse_ids(FLAGS.prompt_ids, "prompt_ids")


def sampling_params(vocab_size: int, **override) -> SamplingParams:
    """SamplingParams from the flags (overrides win). Bad values surface when the request is submitted."""
    bias = {}
    for item in filter(None, FLAGS.logit_bias.replace(" ", "").split(",")):
        k, sep, v = item.partition(":")
        try:
            bias[int(k)] = float(v)
        except ValueError:
            raise app.UsageError(f"--logit_bias item {item!r}: expected 'token_id:bias'") from None
        if not sep:
            raise app.UsageError(f"--logit_bias item {item!r}: expected 'token_id:bias'")
    stops = FLAGS.stop_token_ids.strip()
    if stops == "harmony":
        stop_ids = tuple(sorted(STOP_TOKENS)) if vocab_size == VOCAB_SIZE else ()
    else:
        stop_ids = tuple(parse_ids(stops, "stop_token_ids"))
    kw = dict(temperature=FLAGS.temperature, top_p=FLAGS.top_p, top_k=FLAGS.top_k, min_p=FLAGS.min_p,
              presence_penalty=FLAGS.presence_penalty, frequency_penalty=FLAGS.frequency_penalty,
              repetition_penalty=FLAGS.repetition_penalty, logit_bias=bias or None, seed=FLAGS.sampling_seed,
              stop_token_ids=stop_ids, stop=tuple(FLAGS.stop), max_tokens=FLAGS.max_tokens,
              logprobs=FLAGS.logprobs, top_logprobs=FLAGS.top_logprobs)
    kw.update(override)
    return SamplingParams(**kw)


def setup_compilation_cache() -> str | None:
    """Call before loading the model (compilations start there)."""
    return enable_persistent_cache(FLAGS.compilation_cache_dir)


def build_engine(model, *, num_slots: int = 1, detokenize=None) -> Engine:
    """The engine the flags describe; without --num_slots, the slots the command needs rounded up to a multiple of
    the mesh's data parallelism (every data shard decodes its share of the slots)."""
    dp = model.data_parallel
    try:
        return Engine(model, num_slots=FLAGS.num_slots or -(-num_slots // dp) * dp, max_len=FLAGS.max_len,
                      prefill_chunk=FLAGS.prefill_chunk, min_prefill_chunk=FLAGS.min_prefill_chunk,
                      decode_steps=FLAGS.decode_steps, max_top_logprobs=FLAGS.max_top_logprobs,
                      max_stop_token_ids=MAX_STOP_TOKEN_IDS, detokenize=detokenize, seed=FLAGS.seed,
                      constrained_slowdown=FLAGS.constrained_slowdown or None)
    except ValueError as e:
        raise app.UsageError(f"engine flags: {e}") from None


def limits(cfg, *, detokenize: bool) -> Limits:
    """What an engine built from these flags will take (its .limits), known from the config alone."""
    if not 1 <= FLAGS.max_len <= cfg.max_context:
        raise app.UsageError(f"--max_len={FLAGS.max_len}: expected a value in [1, {cfg.max_context}] (the model's "
                             f"context)")
    return Limits(cfg.vocab_size, FLAGS.max_len, FLAGS.max_top_logprobs, MAX_STOP_TOKEN_IDS, detokenize,
                  default_max_tokens=default_max_tokens(cfg))


def check_before_loading(cfg, requests: list[Request], *, detokenize: bool = True) -> None:
    """Refuse bad engine flags and requests against the model's config before its weights load (which takes
    minutes for the big models): the same checks the engine makes when a request enters."""
    try:
        for r in requests:
            validate(r, limits(cfg, detokenize=detokenize))
    except RequestError as e:
        raise request_error(e) from None


def load_tokenizer():
    """The o200k_harmony tiktoken Encoding (gptoss_jax.harmony), or a usage error saying what is missing."""
    try:
        from gptoss_jax.harmony import tokenizer
    except ImportError:
        raise app.UsageError("text needs the harmony tokenizer (gptoss_jax.harmony.tokenizer), which this "
                             "installation lacks; give token ids instead (e.g. --prompt_ids=1,2,3)") from None
    try:
        return tokenizer.get_encoding()
    except Exception as e:  # noqa: BLE001 - e.g. the vocabulary cannot be built offline
        raise app.UsageError(f"the harmony tokenizer is unavailable: {e}") from None


def try_tokenizer():
    """The tokenizer if available, else None (ids-only output)."""
    try:
        return load_tokenizer()
    except app.UsageError:
        return None


def encode(enc, text: str) -> list[int]:
    """Text -> ids; special tokens written out (<|start|>, ...) become their ids."""
    return enc.encode(text, allowed_special="all")


def request_error(e: RequestError) -> app.UsageError:
    return app.UsageError(f"bad request: {e}")


def print_token_stream(engine, request, enc, out=None):
    """Stream one request's tokens to `out` (decoded text with the tokenizer, holding back a partial UTF-8
    character; comma-separated ids without it). Returns (request id, generated ids); RequestError propagates."""
    import sys

    out = out or sys.stdout
    shown, ids, rid = "", [], None
    for ev in engine.stream(request):
        rid = ev.request_id
        if ev.token_id < 0:
            continue
        ids.append(ev.token_id)
        if enc is None:
            out.write(("" if len(ids) == 1 else ",") + str(ev.token_id))
        else:
            text = enc.decode(ids)
            if not text.endswith("\ufffd"):
                out.write(text[len(shown):])
                shown = text
        out.flush()
    return rid, ids
