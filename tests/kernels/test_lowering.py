"""The kernels lower for the chips they are written for (abstract H100 / TPU v5e; no device needed): this catches
ops or block shapes the Triton or Mosaic lowering rejects, which interpret mode cannot. The final compile (Triton
passes and ptxas, or libtpu) is not run here; benchmarks/triton_offline.py does the Triton one where Triton is
installed."""
import functools

import jax
import jax.numpy as jnp
import pytest

import gptoss_jax
from gptoss_jax import kernels, params as params_lib
from gptoss_jax.config import PRESETS
from gptoss_jax.kernels import attention_gpu, moe_gpu, moe_tpu, offline
from gptoss_jax.model.transformer import KVCache

pytestmark = pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")
S = jax.ShapeDtypeStruct
H, I = 2880, 2880


def _weights(g, n, k):
    return S((g, n, k // 32, 16), jnp.uint8), S((g, n, k // 32), jnp.uint8)


@pytest.mark.parametrize("m,g,n,k", [(4, 128, 2 * I, H),        # 120b decode, batch 1: mlp1
                                     (1024, 32, H, I),          # 20b decode, batch 256: mlp2
                                     (8192, 128, 2 * I, H)])    # 120b prefill chunk
def test_moe_gpu_kernel_lowers_to_triton(m, g, n, k):
    """The default route (kperm): its inline PTX decode, no FP8 conversion, one dot."""
    fn = functools.partial(moe_gpu.mxfp4_matmul_pallas, interpret=False)
    [ttir] = offline.triton_ir(fn, S((m, k), jnp.bfloat16), *_weights(g, n, k), S((g,), jnp.int32))
    assert "tt.dot" in ttir and "0x81C081C0" in ttir and "f8E4M3FN" not in ttir


@pytest.mark.parametrize("route,marker", [("e4m3", "f8E4M3FN"), ("asm", "0x7E807E80"), ("kperm", "0x81C081C0")])
def test_moe_gpu_routes_lower(route, marker):
    fn = functools.partial(moe_gpu.mxfp4_matmul_pallas, interpret=False,
                           tiles=moe_gpu.GpuTiles(16, 64, 4, dequant=route))
    [ttir] = offline.triton_ir(fn, S((4, H), jnp.bfloat16), *_weights(32, 2 * I, H), S((32,), jnp.int32))
    assert marker in ttir and all(other not in ttir for r, other in
                                  [("e4m3", "f8E4M3FN"), ("asm", "0x7E807E80"), ("kperm", "0x81C081C0")] if r != route)


def test_moe_gpu_kernel_lowers_on_weights_stacked_over_layers():
    """120b's mlp1 experts of all 18 layer pairs (19 GB: 64-bit offsets), one layer read by index."""
    fn = functools.partial(moe_gpu.mxfp4_matmul_pallas, interpret=False)
    blocks, scales = _weights(128, 2 * I, H)
    stack = lambda a: S((18, *a.shape), a.dtype)
    [ttir] = offline.triton_ir(fn, S((4, H), jnp.bfloat16), stack(blocks), stack(scales), S((128,), jnp.int32),
                               S((), jnp.int32))
    assert "i64" in ttir and "tt.dot" in ttir


def test_attention_kernel_lowers_to_triton():
    cache = S((18, 2, 8192, 8, 64), jnp.bfloat16)
    fn = functools.partial(attention_gpu.decode_attention, interpret=False)
    [ttir] = offline.triton_ir(fn, S((2, 64, 64), jnp.bfloat16), cache, cache, S((), jnp.int32),
                               S((2,), jnp.int32), S((2,), jnp.int32), S((64,), jnp.bfloat16))
    assert ttir.count("tt.dot") == 2


def test_moe_tpu_kernel_lowers_to_mosaic():
    fn = functools.partial(moe_tpu.mxfp4_matmul_tpu, interpret=False)
    lowered = offline.lower_for("tpu", fn, S((16, H), jnp.bfloat16), *_weights(32, 2 * I, H), S((32,), jnp.int32))
    assert "tpu_custom_call" in lowered.as_text()


def test_model_decode_step_lowers_with_gpu_kernels(monkeypatch):
    """The whole gpt-oss-20b decode step, kernels inside the layer scan, lowered for one H100 (abstract weights)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    cfg = PRESETS["gpt-oss-20b"]
    model = gptoss_jax.GptOss(cfg, None, kernels=kernels.Kernels(moe="pallas_gpu", attention="pallas_gpu"))
    cache = KVCache.shapes(cfg, 2, 1024)
    args = (params_lib.abstract_params(cfg), S((2, 1), jnp.int32), S((2, 1), jnp.int32), cache, S((2,), jnp.int32))
    ttir = offline.triton_ir(model._apply_impl, *args)
    # one layer pair, traced once in the scan: attention over the ring and over the full cache, and the two expert
    # matmuls (the sliding and full layers' MoE share their jitted kernels, which lower once)
    assert len(ttir) == 4
    assert sum("0x81C081C0" in t for t in ttir) == 2                   # the default MXFP4 route: kperm


def test_prefill_attention_kernel_lowers_to_triton():
    """120b shapes: an 8k chunk against a full layer's stacked cache, read in place with the layer index."""
    from gptoss_jax.kernels import attention_prefill_gpu

    cache = S((18, 1, 8192, 8, 64), jnp.bfloat16)

    def fn(q, k, v, q_pos, key_start, sinks, layer):
        return attention_prefill_gpu.prefill_attention(q, k, v, q_pos, key_start, sinks, layer=layer, kv_len=8192)

    [ttir] = offline.triton_ir(fn, S((1, 8192, 64, 64), jnp.bfloat16), cache, cache, S((1, 8192), jnp.int32),
                               S((1,), jnp.int32), S((64,), jnp.bfloat16), S((), jnp.int32))
    assert ttir.count("tt.dot") == 2


MODEL_PREFILL_LOWERING = """
import jax, jax.numpy as jnp
import gptoss_jax
from gptoss_jax import kernels, params as params_lib
from gptoss_jax.config import PRESETS
from gptoss_jax.kernels import offline
from gptoss_jax.model.transformer import KVCache
S = jax.ShapeDtypeStruct
jax.default_backend = lambda: "gpu"
cfg = PRESETS["gpt-oss-20b"]
model = gptoss_jax.GptOss(cfg, None, kernels=kernels.Kernels(moe="pallas_gpu", attention="pallas_gpu"))
args = (params_lib.abstract_params(cfg), S((1, 512), jnp.int32), S((1, 512), jnp.int32),
        KVCache.shapes(cfg, 1, 1024), S((1,), jnp.int32))
ttir = offline.triton_ir(model._apply_impl, *args)
print(sum("prefill_attention" in t for t in ttir), len(ttir))
"""


def test_model_prefill_chunk_lowers_with_gpu_kernels():
    """A gpt-oss-20b prefill chunk against the cache, lowered for one H100: the flash kernel on both layer kinds.
    In a process of its own: a whole model lowered for another platform (jax.default_backend patched) must leave
    nothing behind in the test process's caches."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", MODEL_PREFILL_LOWERING],
                       capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["2", "4"], r.stdout