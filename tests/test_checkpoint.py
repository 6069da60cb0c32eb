"""Checkpoint loading: layout detection, the writer's files, and one clear error for every kind of bad input."""
import json
import os
import shutil
import struct

import numpy as np
import pytest
from safetensors import safe_open

import gptoss_jax
from gptoss_jax.checkpoint import layouts, synthetic
from gptoss_jax.checkpoint.safetensors_io import ByteCounter, CheckpointError, SafetensorsFile, write_safetensors
from gptoss_jax.config import PRESETS

CFG = PRESETS["tiny"]


@pytest.fixture()
def release(tmp_path):
    return synthetic.write_release(str(tmp_path / "ckpt"), CFG, seed=5, max_shard_bytes=60_000)


def _load(path):
    return gptoss_jax.load(path, dtype="float32", show_progress=False)


def test_layouts_are_detected(release):
    assert layouts.locate(release).layout == layouts.HF
    assert len(layouts.locate(release).files) > 1                      # sharded + index
    assert layouts.locate(os.path.join(release, "original")).layout == layouts.ORIGINAL
    # a folder with only original/ is found through it
    shutil.rmtree(os.path.join(release, "x"), ignore_errors=True)
    only_orig = os.path.join(os.path.dirname(release), "only_orig")
    os.makedirs(only_orig)
    shutil.copytree(os.path.join(release, "original"), os.path.join(only_orig, "original"))
    assert layouts.locate(only_orig).layout == layouts.ORIGINAL


def test_sharded_original_layout_like_the_120b_release(tmp_path, release):
    path = synthetic.write_checkpoint(str(tmp_path / "orig_sharded"), CFG, layouts.ORIGINAL, seed=5,
                                      max_shard_bytes=50_000)
    files = sorted(os.listdir(path))
    assert files[1].startswith("model--00001-of-0000") and layouts.HF_INDEX in files
    assert layouts.locate(path).layout == layouts.ORIGINAL
    tokens = np.arange(12, dtype=np.int32)[None] * 7
    np.testing.assert_array_equal(np.asarray(_load(path)(tokens)), np.asarray(_load(release)(tokens)))


def test_written_files_read_with_the_safetensors_library(release):
    with safe_open(os.path.join(release, "original", "model.safetensors"), "np") as f:
        blocks = f.get_tensor("block.1.mlp.mlp1_weight.blocks")
        assert blocks.dtype == np.uint8 and blocks.shape == (8, 128, 2, 16)
        assert f.get_tensor("block.0.attn.norm.scale").dtype == np.float32
    ours = SafetensorsFile(os.path.join(release, "original", "model.safetensors"))
    np.testing.assert_array_equal(ours.read("block.1.mlp.mlp1_weight.blocks"), blocks)
    # a region read returns exactly that box, and counts exactly its bytes
    counter = ByteCounter()
    f2 = SafetensorsFile(os.path.join(release, "original", "model.safetensors"), counter)
    box = f2.read("block.1.mlp.mlp1_weight.blocks", (slice(2, 5), slice(0, 128), slice(1, 2), slice(0, 16)))
    np.testing.assert_array_equal(box, blocks[2:5, :, 1:2])
    assert counter.total == box.nbytes
    # a view of fused qkv rows (k of layer 0) reshaped to [Nkv, D, H]
    qkv = SafetensorsFile(os.path.join(release, "original", "model.safetensors")).read("block.0.attn.qkv.weight")
    q_rows = CFG.num_heads * CFG.head_dim
    k = f2.read("block.0.attn.qkv.weight", (slice(1, 2), slice(0, 16), slice(0, 64)),
                view_shape=(CFG.num_kv_heads, CFG.head_dim, CFG.hidden_size), row_offset=q_rows)
    np.testing.assert_array_equal(k[0], qkv[q_rows + 16:q_rows + 32])


@pytest.mark.parametrize("layout", [layouts.HF, layouts.ORIGINAL])
def test_fused_qkv_boxes_spanning_q_k_and_v_are_read_exactly(release, layout):
    """A device's box of the fused qkv weight [Nkv, G+2, D, H] may span q, k and v rows of the checkpoint: each
    part it overlaps is read once, exactly its bytes, and the pieces land in place (q head g*G + j at [g, j])."""
    from gptoss_jax import params as params_lib
    from gptoss_jax.checkpoint import loader

    folder = release if layout == layouts.HF else os.path.join(release, "original")
    counter = ByteCounter()
    ckpt = loader.OpenCheckpoint(layouts.locate(folder), counter)
    Nq, Nkv, D, H, G = CFG.num_heads, CFG.num_kv_heads, CFG.head_dim, CFG.hidden_size, CFG.q_per_kv
    read = lambda name: ckpt.where[name].read(name)
    if layout == layouts.HF:
        q, k, v = (read(f"model.layers.1.self_attn.{x}_proj.weight") for x in "qkv")
    else:
        qkv = read("block.1.attn.qkv.weight")                       # rows: every q head, then k, then v
        q, k, v = qkv[:Nq * D], qkv[Nq * D:(Nq + Nkv) * D], qkv[(Nq + Nkv) * D:]
    want = np.concatenate([q.reshape(Nkv, G, D, H), k.reshape(Nkv, 1, D, H), v.reshape(Nkv, 1, D, H)], axis=1)
    assert np.array_equal(want[1, 1], q[3 * D:4 * D]) and np.array_equal(want[1, G], k[D:])   # the GQA order
    spec = params_lib.flat_specs(CFG)["layers/full/attn/qkv_w"].unstacked()
    parts = loader.sources_of(layouts.entries(CFG, layout))[("layers/full/attn/qkv_w", 0)]
    boxes = [(slice(0, Nkv), slice(0, G + 2), slice(0, D), slice(0, H)),      # everything
             (slice(1, 2), slice(G - 1, G + 1), slice(3, 9), slice(5, 40)),    # group 1's last q head and its k head
             (slice(0, 2), slice(G, G + 2), slice(0, D), slice(0, H)),         # k and v
             (slice(1, 2), slice(0, 1), slice(0, D), slice(7, 8))]             # one q head alone
    for box in boxes:
        counter.total = 0
        got = loader.read_box(ckpt, parts, spec, box, set())
        np.testing.assert_array_equal(got, want[box])
        assert counter.total == got.nbytes, box                    # exactly the box's bytes, nothing twice
    ckpt.close()


def _rewrite(path, name, fn):
    """Rewrite one tensor of an original-layout file through fn(name, shape, dtype, array) -> (shape, dtype, array)."""
    f = SafetensorsFile(path)
    items = []
    for n, info in f.tensors.items():
        arr = f.read(n)
        items.append((n, *fn(n, info.shape, info.dtype, arr)) if n == name else (n, info.shape, info.dtype, arr))
    f.close()
    arrays = {n: a for n, _, _, a in items if a is not None}
    write_safetensors(path, [(n, s, d) for n, s, d, a in items if a is not None], lambda n: arrays[n])


def test_missing_tensor_is_named(release):
    p = os.path.join(release, "original", "model.safetensors")
    _rewrite(p, "block.1.attn.sinks", lambda n, s, d, a: (s, d, None))
    with pytest.raises(CheckpointError, match=r"missing tensor 'block.1.attn.sinks' \(expected bfloat16\[4\]\)"):
        _load(os.path.join(release, "original"))


def test_wrong_shape_is_named(release):
    p = os.path.join(release, "original", "model.safetensors")
    _rewrite(p, "block.0.mlp.gate.bias", lambda n, s, d, a: ((s[0] + 1,), d, np.zeros(s[0] + 1, d)))
    with pytest.raises(CheckpointError, match=r"block.0.mlp.gate.bias' has shape \[9\], expected \[8\]"):
        _load(os.path.join(release, "original"))


def test_wrong_dtype_is_named(release):
    p = os.path.join(release, "original", "model.safetensors")
    _rewrite(p, "block.0.mlp.mlp2_weight.scales", lambda n, s, d, a: (s, np.dtype(np.int32), a.astype(np.int32)))
    with pytest.raises(CheckpointError, match=r"mlp2_weight.scales' has dtype I32, expected U8"):
        _load(os.path.join(release, "original"))


def test_truncated_file_is_named(release):
    p = os.path.join(release, "original", "model.safetensors")
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(CheckpointError, match=rf"model.safetensors: truncated: tensor .* needs bytes up to {size} "
                                              rf"but the file has {size - 100}"):
        _load(os.path.join(release, "original"))
    with open(p, "r+b") as f:
        f.truncate(5)
    with pytest.raises(CheckpointError, match="too short"):
        _load(os.path.join(release, "original"))


def test_garbage_header_is_named(tmp_path, release):
    p = os.path.join(release, "original", "model.safetensors")
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        _load(os.path.join(release, "original"))


def test_config_that_contradicts_the_tensors(release):
    cfg_path = os.path.join(release, "original", "config.json")
    d = json.load(open(cfg_path))
    d["num_experts"] = 16
    json.dump(d, open(cfg_path, "w"))
    with pytest.raises(CheckpointError) as e:
        _load(os.path.join(release, "original"))
    msg = str(e.value)
    assert "config.json says layers=2, experts=16" in msg
    assert "block.0.mlp.gate.weight' has shape [8, 64], expected [16, 64]" in msg
    # more layers in the files than the config has: the extra tensors are reported
    d["num_experts"], d["num_hidden_layers"] = 8, 2
    json.dump(d, open(cfg_path, "w"))
    hf_cfg = os.path.join(release, "config.json")
    h = json.load(open(hf_cfg))
    h["num_hidden_layers"], h["layer_types"] = 4, h["layer_types"] * 2
    json.dump(h, open(hf_cfg, "w"))
    with pytest.raises(CheckpointError, match="missing tensor 'model.layers.2"):
        _load(release)


def test_unknown_layout_and_missing_pieces(tmp_path):
    folder = tmp_path / "weird"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="no .safetensors files"):
        _load(str(folder))
    write_safetensors(str(folder / "model.safetensors"), [("encoder.w", (2,), np.dtype(np.float32))],
                      lambda n: np.zeros(2, np.float32))
    with pytest.raises(CheckpointError, match="no config.json"):
        _load(str(folder))
    (folder / "config.json").write_text(json.dumps(CFG.to_original_json()))
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        _load(str(folder))
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        _load(str(tmp_path / "nope"))


def test_hf_index_listing_a_missing_shard(release):
    shards = sorted(set(json.load(open(os.path.join(release, layouts.HF_INDEX)))["weight_map"].values()))
    assert len(shards) >= 2
    os.remove(os.path.join(release, shards[1]))
    with pytest.raises(CheckpointError, match="lists shard files that are not there"):
        _load(release)


def test_bad_token_ids_are_named(release):
    model = _load(release)
    with pytest.raises(gptoss_jax.InputError, match=r"token id 512 at \[0, 1\] is outside the vocabulary \[0, 512\)"):
        model(np.array([[1, 512]]))
    with pytest.raises(gptoss_jax.InputError, match="non-empty"):
        model(np.zeros((1, 0), np.int32))
    with pytest.raises(gptoss_jax.InputError, match=r"\[batch, seq\]"):
        model(np.array([1, 2, 3]))
