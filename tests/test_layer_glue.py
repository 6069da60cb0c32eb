"""Per-layer glue: routing a decode batch by counting sort (the same grouping as the argsort it replaces), and the
device ops a layer pair lowers to for an abstract GPU (what `gptoss bench` prints)."""
import jax.numpy as jnp
import numpy as np
import pytest

from gptoss_jax.cli import bench_program
from gptoss_jax.config import get_config
from gptoss_jax.kernels import REFERENCE, Kernels
from gptoss_jax.model import moe


@pytest.mark.parametrize("m,groups", [(4, 128), (64, 8), (3000, 32)])     # counting sort, counting, argsort
def test_grouping_is_the_stable_sort_by_expert(m, groups):
    rng = np.random.default_rng(m)
    row_expert = rng.integers(0, groups + 1, m).astype(np.int32)            # groups = "not on this device"
    dest, source, sizes = (np.asarray(a) for a in moe.group_by_expert(jnp.asarray(row_expert), groups))
    order = np.argsort(row_expert, kind="stable")
    np.testing.assert_array_equal(source, order)
    np.testing.assert_array_equal(dest[source], np.arange(m))
    np.testing.assert_array_equal(sizes, np.bincount(row_expert, minlength=groups + 1)[:groups])


def test_a_decode_layer_pair_routes_without_sorting():
    ops = bench_program.decode_pair_ops(get_config("gpt-oss-20b"), Kernels())
    assert "stablehlo.sort" not in ops
    assert sum(ops.values()) > 50                                    # the count is of real ops, not an empty body
    xla = bench_program.decode_pair_ops(get_config("gpt-oss-20b"), REFERENCE)
    assert xla.get("stablehlo.custom_call", 0) < ops["stablehlo.custom_call"]   # the kernel path: Pallas calls
    # ... all of them, though lowered on a CPU machine: attention of 2 layers, 2 expert matmuls a layer
    assert ops["stablehlo.custom_call"] == 6
