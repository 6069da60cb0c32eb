"""A real server on loopback (uvicorn on a free port, in this process so tests share compilations) over the `demo`
preset (the real o200k_harmony vocabulary, tiny layers, random weights, float32), driven by the official client."""
import dataclasses
import threading
import time

import pytest

import gptoss_jax
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import PRESETS
from gptoss_jax.engine import Engine
from gptoss_jax.engine.prefix_cache import PrefixCacheConfig
from gptoss_jax.harmony import constants, tokenizer
from gptoss_jax.server.serve import ServeOptions, bind, make_context, uvicorn_server

MODEL = "demo"
ENGINE_KW = dict(num_slots=4, max_len=2048, prefill_chunk=512, min_prefill_chunk=128, decode_steps=4,
                 max_top_logprobs=3)


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("serve_ckpt") / "demo")
    synthetic.write_checkpoint(path, PRESETS["demo"], seed=3)
    return gptoss_jax.load(path, dtype="float32", show_progress=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The `tiny` preset (512-token vocabulary: /v1/completions with token ids only), fast enough for load tests."""
    path = str(tmp_path_factory.mktemp("serve_ckpt") / "tiny")
    synthetic.write_checkpoint(path, PRESETS["tiny"], seed=4)
    return gptoss_jax.load(path, dtype="float32", show_progress=False)


@dataclasses.dataclass
class Running:
    base_url: str
    url: str
    ctx: object
    engine: Engine
    server: object
    thread: threading.Thread

    def client(self, **kw):
        import openai
        return openai.OpenAI(base_url=self.base_url, api_key=kw.pop("api_key", "none"), max_retries=0, **kw)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=120)
        self.engine.close()


def start(model, *, prefix_cache=True, max_queue=256, api_key=None, name=MODEL, boundary=constants.END,
          **kw) -> Running:
    harmony = model.cfg.vocab_size == constants.VOCAB_SIZE
    prefix = PrefixCacheConfig(entries=64, boundary_token_ids=(boundary,), min_tokens=4) if prefix_cache else None
    engine = Engine(model, detokenize=tokenizer.get_encoding().decode if harmony else None, prefix_cache=prefix,
                    **{**ENGINE_KW, **kw})
    opts = ServeOptions(model_name=name, port=0, max_queue=max_queue, api_key=api_key, shutdown_grace_s=5)
    ctx = make_context(engine, opts)
    server = uvicorn_server(ctx, opts)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    ctx.loop.start()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    return Running(f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}", ctx, engine, server, thread)


@pytest.fixture(scope="module")
def server(demo_model):
    s = start(demo_model)
    yield s
    s.stop()


TINY = "tiny"
TINY_END = 7   # the tiny model's stand-in for a message boundary token


@pytest.fixture(scope="module")
def tiny_server(tiny_model):
    from tests.engine.conftest import ENGINE_KW as TINY_KW     # the engine tests' sizes: their compilations serve
    s = start(tiny_model, name=TINY, boundary=TINY_END, **TINY_KW)
    yield s
    s.stop()


def metric(url: str, name: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
