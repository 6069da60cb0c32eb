"""`detect_in(environ, **kw)`: gptoss_jax.distributed.detect run in an environment holding exactly `environ`'s
cluster variables (detection reads the process environment, as JAX's own cluster detectors do)."""
import os

import pytest

from gptoss_jax.distributed import detect

CLUSTER_VARS = ("SLURM_", "GPTOSS_", "JOB_", "JOBSET_", "REPLICATED_JOB", "OMPI_", "PMIX_", "TPU_", "KUBERNETES_",
                "CUDA_VISIBLE_DEVICES", "JAX_COORDINATOR")


@pytest.fixture
def detect_in(monkeypatch):
    def run(environ, **kw):
        for k in list(os.environ):
            if k.startswith(CLUSTER_VARS):
                monkeypatch.delenv(k)
        for k, v in environ.items():
            monkeypatch.setenv(k, v)
        return detect(**kw)
    return run
