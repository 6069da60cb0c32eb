"""gptoss generate: sample continuations of a prompt (token ids, or text with the harmony tokenizer) with the
engine, or answer a harmony chat (--chat: the prompt is a user message; --messages: a whole OpenAI-style
conversation). One sample streams to stdout as it is generated; --json prints ids, logprobs, finish reasons, timings
(and, for chats, the parsed answer, chain of thought and tool calls).

    gptoss generate --model=demo --prompt_ids=24912,2375 --temperature=0 --max_tokens=16 --json
    gptoss generate --checkpoint=/ckpt/gpt-oss-20b --prompt="The capital of France is" --num_samples=4
    gptoss generate --checkpoint=/ckpt/gpt-oss-20b --chat --prompt="Why is the sky blue?" --reasoning_effort=high
    gptoss generate --checkpoint=/ckpt/gpt-oss-20b --messages=@chat.json --tools=@tools.json --json
"""
import dataclasses
import json
import os
import sys
import time

from absl import app, flags

from gptoss_jax import chat as chat_lib
from gptoss_jax.cli import chat_flags
from gptoss_jax.cli import flags as common
from gptoss_jax.engine import COUNTER, Request, RequestError, Result
from gptoss_jax.cli import engine_flags as eflags
from gptoss_jax.harmony.constants import VOCAB_SIZE

flags.DEFINE_bool("chat", False, "Treat --prompt as a user message of a harmony chat (see --reasoning_effort, "
                  "--system, --tools, --response_format).")
flags.DEFINE_string("messages", None, "A whole OpenAI-style chat (JSON list of messages, or @path) to answer.")
flags.DEFINE_integer("num_samples", 1, "Independent samples of the prompt, decoded together (with --sampling_seed, "
                     "sample i uses seed + i).")
FLAGS = flags.FLAGS


def _print_stream(engine, req, enc) -> Result:
    rid, _ = eflags.print_token_stream(engine, req, enc)
    sys.stdout.write("\n")
    return engine.result(rid)


def _chat_requests(cfg) -> list[chat_lib.ChatRequest]:
    """--chat / --messages as one ChatRequest a sample, checked against the model's config (rendered, constraint
    compiled, sampling validated) before the model loads."""
    if cfg.vocab_size != VOCAB_SIZE:
        raise app.UsageError(f"--chat and --messages need a model with the o200k_harmony vocabulary "
                             f"({VOCAB_SIZE} tokens); {cfg.name} has {cfg.vocab_size} (use --prompt_ids)")
    if FLAGS.messages is not None:
        messages = chat_flags.json_flag("messages", FLAGS.messages, "a JSON list of OpenAI chat messages")
    elif FLAGS.prompt is not None:
        if not FLAGS.prompt.strip():
            raise app.UsageError("--prompt is empty: with --chat it is the user's message, e.g. "
                                 "--prompt='Why is the sky blue?'")
        messages = [{"role": "user", "content": FLAGS.prompt}]
    else:
        raise app.UsageError("--chat needs --prompt (the user message) or --messages (a whole conversation)")
    base = eflags.sampling_params(cfg.vocab_size)
    reqs = [chat_flags.chat_request(messages, base if base.seed is None else
                                    dataclasses.replace(base, seed=base.seed + i))
            for i in range(FLAGS.num_samples)]
    try:
        eflags.check_before_loading(cfg, [chat_lib.to_engine_request(reqs[0], max_len=FLAGS.max_len)])
    except ValueError as e:  # ChatInputError / ConstraintError name the problem
        raise app.UsageError(f"bad chat request: {e}") from None
    return reqs


def _chat_main(model, engine, reqs: list[chat_lib.ChatRequest]):
    """--chat / --messages: harmony in, parsed answer out."""
    tools = chat_flags.builtin_tools()
    if tools:  # the model may call them: each call runs here between its rounds
        if FLAGS.num_samples != 1:
            raise app.UsageError("--builtin_tools runs one conversation: use --num_samples=1")
        looped = chat_flags.run_tool_turn(engine, reqs[0].messages, reqs[0].sampling, tools,
                                          out=open(os.devnull, "w") if FLAGS.json else None)
        if FLAGS.json:
            print(json.dumps({"model": model.cfg.name, "messages": looped.messages, "rounds": looped.rounds,
                              "finish_reason": looped.finish_reason,
                              "tool_calls": [dataclasses.asdict(c) for c in looped.calls]}))
        return
    try:
        if FLAGS.num_samples == 1 and not FLAGS.json:
            results = [chat_flags.print_stream(engine, reqs[0])]
        else:
            engine_reqs = [chat_lib.to_engine_request(r, max_len=engine.max_len) for r in reqs]
            results = [chat_lib.from_engine_result(r) for r in engine.generate(engine_reqs, progress=FLAGS.progress)]
    except (RequestError, ValueError) as e:  # ChatInputError / ConstraintError are ValueErrors naming the problem
        raise app.UsageError(f"bad chat request: {e}") from None
    if FLAGS.json:
        print(json.dumps({"model": model.cfg.name, "samples": [
            {**r.to_message(), "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens,
             "completion_tokens": r.completion_tokens, "token_ids": r.token_ids, "error": r.error,
             "timings": r.timings} for r in results]}))
    elif FLAGS.num_samples > 1:
        for i, r in enumerate(results):
            print(f"--- sample {i} ({r.finish_reason})\n{r.content}")
    if any(r.finish_reason == "error" for r in results):
        for r in results:
            if r.error:
                print(f"gptoss generate: {r.error}", file=sys.stderr)
        sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if FLAGS.num_samples < 1:
        raise app.UsageError(f"--num_samples must be >= 1, got {FLAGS.num_samples}")
    if FLAGS.chat or FLAGS.messages is not None:
        eflags.load_tokenizer()  # chats need it: fail before loading the model
        chat_flags.builtin_tools()
        reqs = _chat_requests(common.model_config())
        eflags.setup_compilation_cache()
        model = common.load_model()
        engine = eflags.build_engine(model, num_slots=min(8, FLAGS.num_samples))
        return _chat_main(model, engine, reqs)
    enc = eflags.try_tokenizer()
    prompt = eflags.prompt_from_flags(enc)
    cfg = common.model_config()
    base = eflags.sampling_params(cfg.vocab_size)
    reqs = [Request(prompt, base if base.seed is None else dataclasses.replace(base, seed=base.seed + i))
            for i in range(FLAGS.num_samples)]
    eflags.check_before_loading(cfg, reqs, detokenize=enc is not None)  # refuse bad values before the long load
    cache_dir = eflags.setup_compilation_cache()
    model = common.load_model()
    engine = eflags.build_engine(model, num_slots=min(8, FLAGS.num_samples),
                                 detokenize=enc.decode if enc is not None else None)
    t0 = time.perf_counter()
    try:
        if FLAGS.num_samples == 1 and not FLAGS.json:
            results = [_print_stream(engine, reqs[0], enc)]
        else:
            results = engine.generate(reqs, progress=FLAGS.progress and FLAGS.num_samples > 1)
    except RequestError as e:
        raise eflags.request_error(e) from None
    wall = time.perf_counter() - t0
    n_tok = sum(r.completion_tokens for r in results)
    if FLAGS.json:
        out = {"model": model.cfg.name, "prompt_ids": prompt,
               "samples": [dataclasses.asdict(r) for r in results],
               "compilation": {**COUNTER.snapshot(), "cache_dir": cache_dir, "steps": engine.compilations()}}
        print(json.dumps(out))
    elif FLAGS.num_samples > 1:
        for i, r in enumerate(results):
            body = r.text if r.text is not None else ",".join(map(str, r.token_ids))
            print(f"--- sample {i} (seed {r.seed}, {r.finish_reason})\n{body}")
    for r in results:
        if r.finish_reason == "error":
            print(f"gptoss generate: request {r.id} failed: {r.error}", file=sys.stderr)
    print(f"[{n_tok} tokens in {wall:.2f}s = {n_tok / max(wall, 1e-9):.1f} tokens/s; first token after "
          f"{min(r.timings.get('ttft_s', 0) for r in results):.2f}s; finish: "
          f"{','.join(r.finish_reason for r in results)}]", file=sys.stderr)
    if any(r.finish_reason == "error" for r in results):
        sys.exit(1)
