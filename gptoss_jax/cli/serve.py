"""gptoss serve: an OpenAI-compatible HTTP server over the engine (/v1/chat/completions, /v1/completions,
/v1/responses, /v1/models, /health, /metrics), streaming, tools, structured output, prompt caching.

    gptoss serve --model=demo                                     # then: base_url http://127.0.0.1:8000/v1
    gptoss serve --checkpoint=/ckpt/gpt-oss-120b --num_slots=32 --max_len=16384 --host=0.0.0.0 --api_key=KEY
    python launch/local.py -n 2 --cpu_devices 4 -- gptoss serve --model=tiny --mesh=1,4,2   # multi-process

In a multi-process job process 0 serves HTTP and every process runs the engine. SIGTERM or Ctrl-C stops it:
requests in flight finish for up to --shutdown_grace_s seconds, the rest are cancelled.
"""
import sys

from absl import app, flags

from gptoss_jax.cli import engine_flags as eflags
from gptoss_jax.cli import flags as common

flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port, printed at start).", lower_bound=0,
                     upper_bound=65535)
flags.DEFINE_string("api_key", None, "If set, every /v1 request must send 'Authorization: Bearer KEY' (401 "
                    "otherwise).")
flags.DEFINE_integer("max_queue", 256, "Requests waiting for a slot beyond which new ones get HTTP 429.",
                     lower_bound=1)
flags.DEFINE_string("served_model_name", None, "The model name clients send (default: the --model preset, or the checkpoint's config name).")
flags.DEFINE_integer("prefix_cache_entries", 64, "Prompt caching: sliding-window ring snapshots kept on the device "
                     "(each as big as 128 tokens of KV cache); 0 turns prompt caching off.", lower_bound=0)
flags.DEFINE_float("shutdown_grace_s", 30.0, "On SIGTERM, how long requests in flight may finish before they are "
                   "cancelled.", lower_bound=0)
FLAGS = flags.FLAGS
DEFAULT_SLOTS = 8


def build_engine(model, enc):
    from gptoss_jax.engine import Engine
    from gptoss_jax.engine.prefix_cache import PrefixCacheConfig
    from gptoss_jax.harmony import constants

    prefix = None
    if FLAGS.prefix_cache_entries:
        boundary = (constants.END,) if enc is not None else ()
        prefix = PrefixCacheConfig(entries=FLAGS.prefix_cache_entries, boundary_token_ids=boundary)
    dp = model.data_parallel
    try:
        return Engine(model, num_slots=FLAGS.num_slots or -(-DEFAULT_SLOTS // dp) * dp, max_len=FLAGS.max_len,
                      prefill_chunk=FLAGS.prefill_chunk, min_prefill_chunk=FLAGS.min_prefill_chunk,
                      decode_steps=FLAGS.decode_steps, max_top_logprobs=FLAGS.max_top_logprobs,
                      max_stop_token_ids=eflags.MAX_STOP_TOKEN_IDS,
                      detokenize=enc.decode if enc is not None else None, seed=FLAGS.seed, prefix_cache=prefix)
    except ValueError as e:
        raise app.UsageError(f"engine flags: {e}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from gptoss_jax.server.serve import ServeOptions, harmony_encoding, serve

    cfg = common.model_config()            # bad --model / --checkpoint fail before the load
    eflags.limits(cfg, detokenize=False)   # and a bad --max_len
    enc = harmony_encoding(cfg.vocab_size)
    eflags.setup_compilation_cache()
    model = common.load_model()
    engine = build_engine(model, enc)
    from gptoss_jax import api
    name = FLAGS.served_model_name or (FLAGS.model if api.is_preset(common.model_source()) else model.cfg.name)
    opts = ServeOptions(model_name=name, host=FLAGS.host, port=FLAGS.port,
                        api_key=FLAGS.api_key, max_queue=FLAGS.max_queue, shutdown_grace_s=FLAGS.shutdown_grace_s)
    try:
        serve(engine, opts)
    except OSError as e:  # e.g. the port is taken
        print(f"gptoss serve: error: cannot listen on {FLAGS.host}:{FLAGS.port}: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        engine.close()
