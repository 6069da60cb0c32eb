"""One tiny float32 model (window 8, so short tests run far past it) and engines that share its compilations."""
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import PRESETS
from gptoss_jax.engine import Engine

CFG = PRESETS["tiny"]                     # vocab 512, sliding window 8, 2 layers
MAX_LEN = 64
# every engine test uses these sizes, so all engines share one set of compiled steps
ENGINE_KW = dict(num_slots=4, max_len=MAX_LEN, prefill_chunk=16, min_prefill_chunk=8, decode_steps=4,
                 max_top_logprobs=CFG.vocab_size)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("engine_ckpt") / "tiny")
    synthetic.write_checkpoint(path, CFG, seed=7)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    return gptoss_jax.load(tiny_checkpoint, dtype="float32", show_progress=False)


@pytest.fixture
def make_engine(tiny_model):
    made = []

    def make(**kw):
        e = Engine(tiny_model, **{**ENGINE_KW, **kw})
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@pytest.fixture
def engine(make_engine):
    return make_engine()


def prompt(seed: int, n: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, n).tolist()


def full_logprobs(model, seqs) -> np.ndarray:
    """log-softmax of a plain causal forward (no cache) over each sequence, zero-padded to MAX_LEN (one compile)."""
    import jax

    batch = np.zeros((len(seqs), MAX_LEN), np.int32)
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
    return np.asarray(jax.nn.log_softmax(model(batch), axis=-1))
