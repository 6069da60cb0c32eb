"""Orbax conversion keeps MXFP4 packed and restores onto any mesh with identical logits."""
import os

import jax
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax import sharding
from gptoss_jax.checkpoint import orbax_io
from tests.golden.cases import CASES


def test_round_trip_onto_other_meshes(case_checkpoints, tmp_path):
    case = CASES[2]
    tokens = np.concatenate([case.tokens(), case.tokens()[:, ::-1]])
    src_mesh = sharding.make_mesh((1, 8, 1), jax.devices())
    src = gptoss_jax.load(case_checkpoints[case.name], mesh=src_mesh, dtype="float32", show_progress=False)
    out = orbax_io.save(str(tmp_path / "orbax"), src.cfg, src.params)
    assert orbax_io.is_orbax(out)
    for shape in [(2, 2, 2), None]:
        mesh = None if shape is None else sharding.make_mesh(shape, jax.devices())
        # the same mesh loaded straight from the release files is what the restored model must equal, bit for bit
        direct = gptoss_jax.load(case_checkpoints[case.name], mesh=mesh, dtype="float32", show_progress=False)
        want = np.asarray(direct(tokens))
        restored = gptoss_jax.load(out, mesh=mesh, dtype="float32", show_progress=False)
        for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(direct.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        w = restored.params["layers"]["full"]["mlp"]["mlp1_w"]
        assert w.blocks.dtype == np.uint8 and w.scales.dtype == np.uint8      # still packed
        if mesh is not None:
            assert w.blocks.sharding.spec == src.params["layers"]["full"]["mlp"]["mlp1_w"].blocks.sharding.spec
            assert {s.data.shape[1] for s in w.blocks.addressable_shards} == {case.cfg.num_experts // 4}
        np.testing.assert_array_equal(np.asarray(restored(tokens)), want)


def test_convert_refuses_to_overwrite(case_checkpoints, tmp_path):
    model = gptoss_jax.load(case_checkpoints[CASES[0].name], show_progress=False)
    orbax_io.save(str(tmp_path / "o"), model.cfg, model.params)
    try:
        orbax_io.save(str(tmp_path / "o"), model.cfg, model.params)
    except orbax_io.CheckpointError as e:
        assert "already exists" in str(e)
    else:
        raise AssertionError("a second save into the same folder must be refused")
    assert os.path.exists(tmp_path / "o" / "config.json")


def test_a_folder_saved_with_separate_q_k_v_weights_is_named(case_checkpoints, tmp_path):
    """Folders converted before q, k and v became one weight hold attn/q_w, k_w, v_w: one clear error, no KeyError."""
    case = CASES[0]
    model = gptoss_jax.load(case_checkpoints[case.name], show_progress=False)
    G = case.cfg.q_per_kv
    params = jax.tree.map(lambda x: x, model.params)
    for kind in ("sliding", "full"):
        attn = params["layers"][kind]["attn"]
        for suffix in ("w", "b"):
            fused = attn.pop(f"qkv_{suffix}")                        # [P, Nkv, G+2, D, ...]
            attn[f"q_{suffix}"] = fused[:, :, :G].reshape(fused.shape[0], -1, *fused.shape[3:])
            attn[f"k_{suffix}"], attn[f"v_{suffix}"] = fused[:, :, G], fused[:, :, G + 1]
    out = orbax_io.save(str(tmp_path / "old"), model.cfg, params)
    with pytest.raises(orbax_io.CheckpointError, match=r"older gptoss-jax.*separate weights.*gptoss convert"):
        gptoss_jax.load(out, show_progress=False)
