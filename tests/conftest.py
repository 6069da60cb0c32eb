"""Test setup: 8 fake CPU devices (so real meshes run on any machine), shared synthetic checkpoints."""
import os

# must happen before jax is imported anywhere
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# no persistent compilation cache unless a test names its own folder: an in-process default (the eval backend's)
# would otherwise switch it on for every later test, in the user's ~/.cache, shared with every other process there
os.environ.setdefault("GPTOSS_COMPILATION_CACHE", "off")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def case_checkpoints(tmp_path_factory):
    """The golden cases' models written in both layouts, once per session: {case name: release folder}."""
    from tests.golden.cases import CASES, write_case

    root = tmp_path_factory.mktemp("golden_ckpts")
    return {c.name: write_case(c, str(root)) for c in CASES}
