"""Hostile checkpoints: every bad file is one CheckpointError naming the file, the tensor and what was found vs
expected (through the CLI: one line, exit status 2, no traceback); nothing hangs, nothing loads garbage silently;
non-finite weights are refused at load, and, loaded anyway, NaN logits are named when sampling fails."""
import json
import os
import shutil
import struct
import threading
import time

import numpy as np
import pytest

import gptoss_jax
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.checkpoint.safetensors_io import CheckpointError, SafetensorsFile
from gptoss_jax.config import PRESETS
from tests.test_cli_ux import gptoss, one_error_line  # noqa: F401 - the in-process CLI fixture

CFG = PRESETS["tiny"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return synthetic.write_checkpoint(str(tmp_path_factory.mktemp("hostile") / "tiny"), CFG, seed=3)


@pytest.fixture
def ckpt(pristine, tmp_path):
    """A fresh copy of the tiny HF-layout checkpoint (one model.safetensors) to damage."""
    return shutil.copytree(pristine, str(tmp_path / "ckpt"))


def _shard(path):
    return os.path.join(path, "model.safetensors")


def _read_header(file):
    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), f.read()


def _write_header(file, header, data):
    blob = json.dumps(header).encode()
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)


def _patch_header(path, fn):
    header, data = _read_header(_shard(path))
    _write_header(_shard(path), fn(header), data)


def _load(path, **kw):
    return gptoss_jax.load(path, dtype="float32", show_progress=False, **kw)


def _set_offsets(name, fn):
    def patch(header):
        header[name]["data_offsets"] = fn(header, header[name]["data_offsets"])
        return header
    return patch


K_B, V_B = "model.layers.0.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.bias"

HEADER_CASES = {
    "list": (lambda h: [1, 2, 3], "header is a JSON array, expected an object"),
    "string": (lambda h: "weights", "header is a JSON string, expected an object"),
    "entry_not_object": (lambda h: {**h, K_B: [0, 1]}, f"tensor '{K_B}': header entry is a JSON array"),
    "unknown_dtype": (lambda h: {**h, K_B: {**h[K_B], "dtype": "F4"}}, "dtype 'F4' is not known; expected one of"),
    "shape_not_ints": (lambda h: {**h, K_B: {**h[K_B], "shape": [2.5]}}, "shape [2.5] is not a list of non-negative"),
    "negative_offsets": (_set_offsets(K_B, lambda h, o: [o[0] - 10 ** 6, o[1] - 10 ** 6]),
                         f"tensor '{K_B}': data_offsets [-"),
    "one_offset": (_set_offsets(K_B, lambda h, o: o[:1]), "is not two non-negative integers [begin, end]"),
    "span_not_shape": (_set_offsets(K_B, lambda h, o: [o[0], o[1] + 2]), "BF16[32] needs 64 bytes but its data_offsets"),
    "overlapping": (_set_offsets(V_B, lambda h, o: h[K_B]["data_offsets"]), f"'{K_B}' (bytes ["),
    "past_the_end": (_set_offsets(K_B, lambda h, o: [o[0] + 10 ** 9, o[1] + 10 ** 9]), "truncated: tensor"),
    "metadata_list": (lambda h: {**h, "__metadata__": ["x"]}, "__metadata__ is a JSON array, expected an object"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_bad_header_is_one_error_naming_file_and_tensor(ckpt, case):
    fn, needle = HEADER_CASES[case]
    _patch_header(ckpt, fn)
    with pytest.raises(CheckpointError) as e:
        SafetensorsFile(_shard(ckpt))
    msg = str(e.value)
    assert msg.startswith(_shard(ckpt)) and needle in msg and "\n" not in msg, msg
    if case == "overlapping":
        assert V_B in msg and "overlap" in msg


def test_header_nested_too_deep_is_named(ckpt):
    data = _read_header(_shard(ckpt))[1]
    blob = b"[" * 100_000 + b"]" * 100_000
    with open(_shard(ckpt), "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        SafetensorsFile(_shard(ckpt))


def _fifo_guard(path, seconds=5.0):
    """If a reader blocks on the FIFO, open it for writing after `seconds` so the test fails instead of hanging."""
    def release():
        time.sleep(seconds)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader waiting (ENXIO) or the FIFO is gone: nothing hung
    threading.Thread(target=release, daemon=True).start()


def test_fifo_device_and_folder_in_place_of_a_shard_never_block(ckpt, tmp_path):
    os.remove(_shard(ckpt))
    os.mkfifo(_shard(ckpt))
    _fifo_guard(_shard(ckpt))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model.safetensors: is a FIFO \(named pipe\), not a regular file"):
        _load(ckpt)
    assert time.perf_counter() - t0 < 4.0
    os.remove(_shard(ckpt))
    os.mkdir(_shard(ckpt))
    with pytest.raises(CheckpointError, match="model.safetensors: is a folder, not a regular file"):
        _load(ckpt)
    with pytest.raises(CheckpointError, match="/dev/null: is a character device, not a regular file"):
        SafetensorsFile("/dev/null")


def test_sharded_index_naming_a_fifo_or_a_path_outside_is_refused(tmp_path):
    path = synthetic.write_checkpoint(str(tmp_path / "sharded"), CFG, seed=3, max_shard_bytes=60_000)
    index = os.path.join(path, "model.safetensors.index.json")
    shard = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))[1]
    os.remove(os.path.join(path, shard))
    os.mkfifo(os.path.join(path, shard))
    _fifo_guard(os.path.join(path, shard))
    with pytest.raises(CheckpointError, match=f"{shard}: is a FIFO"):
        _load(path)
    spec = json.load(open(index))
    name = next(iter(spec["weight_map"]))
    spec["weight_map"][name] = "../../etc/passwd"
    json.dump(spec, open(index, "w"))
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' maps to '../../etc/passwd'; expected a file name"):
        _load(path)
    os.remove(index)
    os.mkfifo(index)
    _fifo_guard(index)
    with pytest.raises(CheckpointError, match="index.json: is a FIFO"):
        _load(path)


def test_config_that_is_a_fifo_is_refused(ckpt):
    config = os.path.join(ckpt, "config.json")
    os.remove(config)
    os.mkfifo(config)
    _fifo_guard(config)
    with pytest.raises(CheckpointError, match="config.json: is a FIFO"):
        _load(ckpt)


def _poke(path, name, index, raw: bytes):
    """Overwrite element `index` of tensor `name` in place with the bytes `raw`."""
    f = SafetensorsFile(_shard(path))
    info, start = f.tensors[name], f.data_start
    f.close()
    with open(_shard(path), "r+b") as fh:
        fh.seek(start + info.begin + index * info.dtype.itemsize)
        fh.write(raw)


BF16_NAN, BF16_INF = b"\xc0\x7f", b"\x80\x7f"


def test_non_finite_weights_are_named_at_load(ckpt):
    _poke(ckpt, "model.layers.1.mlp.router.bias", 3, BF16_NAN)
    _poke(ckpt, "model.layers.1.mlp.router.bias", 4, BF16_INF)
    _poke(ckpt, "model.embed_tokens.weight", 0, BF16_NAN)
    _poke(ckpt, "model.layers.0.mlp.experts.down_proj_scales", 7, b"\xff")
    with pytest.raises(CheckpointError) as e:
        _load(ckpt)
    msg = str(e.value)
    assert "non-finite weights" in msg and "\n" not in msg, msg
    assert "'model.layers.1.mlp.router.bias' holds 1 NaN and 1 inf values" in msg
    assert "'model.embed_tokens.weight' holds 1 NaN and 0 inf values" in msg
    assert "'model.layers.0.mlp.experts.down_proj_scales' holds 1 scale bytes of 255" in msg
    assert "model.layers.0.mlp.router.bias" not in msg           # the other layer of the same stacked weight is fine
    assert "check_finite=False" in msg
    _load(ckpt, check_finite=False)                                # the check can be skipped


def test_non_finite_q_k_v_rows_name_the_tensors_of_the_fused_weight(ckpt):
    """q_proj, k_proj and v_proj fill one weight (attn/qkv_b): the error names those tensors of that layer."""
    _poke(ckpt, "model.layers.1.self_attn.k_proj.bias", 2, BF16_INF)
    with pytest.raises(CheckpointError) as e:
        _load(ckpt)
    assert ("'model.layers.1.self_attn.q_proj.bias + model.layers.1.self_attn.k_proj.bias + "
            "model.layers.1.self_attn.v_proj.bias' holds 0 NaN and 1 inf values") in str(e.value), str(e.value)
    assert "layers.0" not in str(e.value)


def test_non_finite_weights_in_an_orbax_folder_are_named(pristine, tmp_path):
    from gptoss_jax.checkpoint import orbax_io

    model = _load(pristine)
    params = dict(model.params)
    params["final_norm"] = params["final_norm"].at[5].set(np.nan)
    out = orbax_io.save(str(tmp_path / "orbax"), model.cfg, params)
    with pytest.raises(CheckpointError, match=r"Orbax checkpoint .*'final_norm' holds 1 NaN and 0 inf values"):
        _load(out)


def test_nan_logits_are_named_when_sampling_finds_nothing(ckpt):
    from gptoss_jax.engine import Engine, Request, SamplingParams

    _poke(ckpt, "model.norm.weight", 0, BF16_NAN)        # the final norm: every logit becomes NaN
    model = _load(ckpt, check_finite=False)
    engine = Engine(model, num_slots=4, max_len=64, prefill_chunk=16, min_prefill_chunk=8, decode_steps=4)
    try:
        [res] = engine.generate([Request([1, 2, 3], SamplingParams(temperature=0.0, max_tokens=4))])
    finally:
        engine.close()
    assert res.finish_reason == "error" and "logits are not finite" in res.error, res.error
    assert "mask" not in res.error


@pytest.mark.parametrize("damage, needle", [
    ("fifo", "model.safetensors: is a FIFO (named pipe), not a regular file"),
    ("folder", "model.safetensors: is a folder, not a regular file"),
    ("list", "header is a JSON array, expected an object"),
    ("string", "header is a JSON string, expected an object"),
    ("negative_offsets", f"tensor '{K_B}': data_offsets [-"),
    ("overlapping", "overlap; expected disjoint data_offsets"),
    ("past_the_end", "truncated: tensor"),
    ("nan", "non-finite weights"),
])
def test_cli_names_each_bad_checkpoint_in_one_line(gptoss, ckpt, tmp_path, damage, needle):  # noqa: F811
    if damage == "fifo":
        os.remove(_shard(ckpt))
        os.mkfifo(_shard(ckpt))
        _fifo_guard(_shard(ckpt))
    elif damage == "folder":
        os.remove(_shard(ckpt))
        os.mkdir(_shard(ckpt))
    elif damage == "nan":
        _poke(ckpt, "model.layers.0.self_attn.o_proj.weight", 11, BF16_NAN)
    else:
        _patch_header(ckpt, HEADER_CASES[damage][0])
    code, _, err = gptoss("generate", f"--checkpoint={ckpt}", "--prompt_ids=1,2", "--compilation_cache_dir=off",
                          "--noprogress", allow_load=True)
    one_error_line(code, err, "generate", needle)
