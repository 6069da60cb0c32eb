"""Sharded forward on 8 fake CPU devices: every mesh gives the single-device logits."""
import jax
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax import params as params_lib
from gptoss_jax import sharding
from tests.golden.cases import CASES

MESHES = [(1, 1, 1), (1, 8, 1), (1, 4, 2), (2, 2, 2)]


@pytest.fixture(scope="module")
def reference(case_checkpoints):
    case = CASES[2]  # tiny-4l: 16 experts, 8 query / 2 kv heads
    tokens = case.tokens()
    tokens = np.concatenate([tokens, tokens[:, ::-1]])  # batch 4: splits over data=2
    one = gptoss_jax.load(case_checkpoints[case.name], dtype="float32", show_progress=False)
    return case, tokens, np.asarray(one(tokens))


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_mesh_gives_same_logits(reference, case_checkpoints, shape):
    assert jax.device_count() == 8
    case, tokens, want = reference
    devices = jax.devices()[:int(np.prod(shape))]
    mesh = sharding.make_mesh(shape, devices)
    model = gptoss_jax.load(case_checkpoints[case.name], mesh=mesh, dtype="float32", show_progress=False)
    # every device holds only its experts
    blocks = model.params["layers"]["sliding"]["mlp"]["mlp1_w"].blocks
    per_device = {s.data.shape[1] for s in blocks.addressable_shards}
    assert per_device == {case.cfg.num_experts // (shape[1] * shape[2])}
    # ... and whole KV groups of the fused qkv: its KV heads with exactly the q heads that read them
    qkv = model.params["layers"]["full"]["attn"]["qkv_w"]
    assert {s.data.shape[1:3] for s in qkv.addressable_shards} == {(case.cfg.num_kv_heads // shape[2],
                                                                    case.cfg.q_per_kv + 2)}
    got = np.asarray(model(tokens))
    assert np.abs(got - want).max() <= 1e-4


def test_sharding_table_drives_every_weight():
    cfg = CASES[2].cfg
    mesh = sharding.make_mesh((2, 2, 2), jax.devices())
    sh = params_lib.shardings(cfg, mesh)
    assert sh["layers"]["full"]["attn"]["qkv_w"].spec == jax.sharding.PartitionSpec(None, "tensor", None, None, None)
    assert sh["layers"]["full"]["mlp"]["mlp1_w"].blocks.spec[1] == ("expert", "tensor")
    assert sh["unembed"].spec[0] == "tensor"


def test_mesh_errors_are_named():
    with pytest.raises(sharding.ShardingError, match="uses 6 devices but 8"):
        sharding.make_mesh("1,3,2")
    with pytest.raises(sharding.ShardingError, match="three integers"):
        sharding.make_mesh("a,b")
    cfg = CASES[0].cfg  # 2 kv heads: tensor=4 cannot split them
    mesh = sharding.make_mesh((1, 2, 4), jax.devices())
    with pytest.raises(sharding.ShardingError, match="kv_heads"):
        params_lib.shardings(cfg, mesh)
