"""Run the server: the engine loop and uvicorn on process 0, the engine followers on every other process.

    from gptoss_jax.server.serve import ServeOptions, serve
    serve(engine, ServeOptions(model_name="gpt-oss-120b", port=8000))     # blocks until SIGTERM / SIGINT
"""
from __future__ import annotations

import dataclasses
import functools
import signal
import socket
import sys

from gptoss_jax.engine import Engine
from gptoss_jax.server import specs
from gptoss_jax.server.app import Context, create_app
from gptoss_jax.server.engine_loop import EngineLoop, follow
from gptoss_jax.server.metrics import Metrics


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    model_name: str
    host: str = "127.0.0.1"
    port: int = 8000                  # 0: any free port (printed)
    api_key: str | None = None
    max_queue: int = 256
    shutdown_grace_s: float = 30.0
    log_level: str = "warning"


def harmony_encoding(vocab_size: int):
    """The o200k_harmony tokenizer when the model uses its vocabulary, else None."""
    from gptoss_jax.harmony import constants, tokenizer
    return tokenizer.get_encoding() if vocab_size == constants.VOCAB_SIZE else None


def make_context(engine: Engine, opts: ServeOptions, *, multiprocess: bool = False) -> Context:
    enc = harmony_encoding(engine.cfg.vocab_size)
    metrics = Metrics(engine.num_slots)
    loop = EngineLoop(engine, functools.partial(specs.build, max_len=engine.max_len), max_queue=opts.max_queue,
                      metrics=metrics, multiprocess=multiprocess)
    return Context(loop, opts.model_name, enc, metrics, engine.limits.max_top_logprobs, opts.api_key,
                   opts.shutdown_grace_s)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)   # listening before the address is announced: an early client waits, never is refused
    return sock


def uvicorn_server(ctx: Context, opts: ServeOptions):
    import uvicorn
    config = uvicorn.Config(create_app(ctx), log_level=opts.log_level, timeout_graceful_shutdown=opts.shutdown_grace_s,
                            access_log=False)
    return uvicorn.Server(config)


def serve(engine: Engine, opts: ServeOptions, *, on_listening=None) -> None:
    """Serve until SIGTERM / SIGINT (then: stop taking requests, finish or cancel those in flight, return)."""
    from gptoss_jax import distributed

    multiprocess = distributed.is_initialized() and jax_process_count() > 1
    if multiprocess and not distributed.is_main():
        follow(engine, functools.partial(specs.build, max_len=engine.max_len))
        return
    ctx = make_context(engine, opts, multiprocess=multiprocess)
    sock = bind(opts.host, opts.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn_server(ctx, opts)
    ctx.loop.start()
    print(f"gptoss serve: {opts.model_name} on http://{host}:{port}/v1 ({engine.num_slots} slots, max_len "
          f"{engine.max_len}; Ctrl-C or SIGTERM stops)", file=sys.stderr, flush=True)
    if on_listening is not None:
        on_listening(port)
    # uvicorn re-raises the signal it shut down on; as SystemExit(0) it ends the command cleanly
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not ctx.loop.stopping:      # uvicorn failed before its lifespan ended
            ctx.loop.stop(0)


def jax_process_count() -> int:
    import jax
    return jax.process_count()
