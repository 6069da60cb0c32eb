"""The parity cases: config, seed and token batch of each golden file (shared by the tests and make_goldens)."""
import dataclasses
import hashlib
import os

import numpy as np

from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import ModelConfig, PRESETS


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    cfg: ModelConfig
    seed: int
    batch: int
    seq: int

    def tokens(self) -> np.ndarray:
        rng = np.random.default_rng(1000 + self.seed)
        return rng.integers(0, self.cfg.vocab_size, size=(self.batch, self.seq)).astype(np.int32)


# sequences several times longer than each config's sliding window; batch > 1
CASES = [
    Case("tiny_s1", PRESETS["tiny"], seed=1, batch=2, seq=24),
    Case("tiny_s2", PRESETS["tiny"], seed=2, batch=3, seq=17),
    Case("tiny4l_s3", PRESETS["tiny-4l"], seed=3, batch=2, seq=21),
]


def write_case(case: Case, folder: str) -> str:
    """Both layouts of the case's model (HF at the top, original/ below); HF split into several shards."""
    path = os.path.join(folder, case.name)
    return synthetic.write_release(path, case.cfg, seed=case.seed, max_shard_bytes=100_000)


def fingerprint(ckpt: str) -> str:
    """sha256 over the original layout's tensor file: changes iff the writer writes different bytes."""
    h = hashlib.sha256()
    with open(os.path.join(ckpt, "original", "model.safetensors"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
