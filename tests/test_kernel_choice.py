"""Kernel choice is part of what a model IS: two models with different kernels live side by side in one process,
each runs its own, engines never share a step compiled for another choice, and a model says what it runs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax import kernels
from gptoss_jax.engine import Engine, Request, SamplingParams
from gptoss_jax.kernels import Kernels

TRACED: list[str] = []


def _spy(name):
    """An MoE implementation that records when a program containing it is traced, then runs the reference."""
    def fn(x, w, group_sizes, *, layer=None):
        TRACED.append(name)
        return kernels.expert_matmul(x, w, group_sizes, impl="reference", layer=layer)
    return fn


kernels.register("spy_a", _spy("spy_a"))
kernels.register("spy_b", _spy("spy_b"))


@pytest.fixture(scope="module")
def params():
    return gptoss_jax.random_model("tiny", seed=5, dtype="float32").params


def test_two_models_run_their_own_kernels_side_by_side(params):
    cfg = gptoss_jax.get_config("tiny")
    a = gptoss_jax.GptOss(cfg, params, dtype="float32", kernels=Kernels(moe="spy_a"))
    b = gptoss_jax.GptOss(cfg, params, dtype="float32", kernels=Kernels(moe="spy_b"))
    tokens = np.arange(12, dtype=np.int32).reshape(2, 6) % cfg.vocab_size
    TRACED.clear()
    out_a = np.asarray(a(tokens))
    assert set(TRACED) == {"spy_a"}
    TRACED.clear()
    out_b = np.asarray(b(tokens))
    assert set(TRACED) == {"spy_b"}
    TRACED.clear()
    np.asarray(a(tokens[:, :5]))                        # a new shape for a: traced again, still its own kernel
    assert set(TRACED) == {"spy_a"}
    np.testing.assert_allclose(out_a, out_b, rtol=1e-6, atol=1e-6)
    assert "moe=spy_a" in repr(a) and "moe=spy_b" in repr(b) and "attention=xla" in repr(a)


def test_engines_key_compiled_steps_by_the_models_kernels(params):
    cfg = gptoss_jax.get_config("tiny")
    engines = [Engine(gptoss_jax.GptOss(cfg, params, dtype="float32", kernels=Kernels(moe=name)), num_slots=2,
                      max_len=32, prefill_chunk=16, min_prefill_chunk=16) for name in ("spy_a", "spy_b")]
    assert engines[0].steps is not engines[1].steps
    outs = []
    for engine, name in zip(engines, ("spy_a", "spy_b")):
        TRACED.clear()
        outs.append(engine.generate([Request([1, 2, 3], SamplingParams(max_tokens=4, temperature=0.0))])[0].token_ids)
        assert set(TRACED) == {name}, (name, TRACED)
        engine.close()
    assert outs[0] == outs[1]
    # a third engine on a model with the same choice reuses the compiled steps
    again = Engine(gptoss_jax.GptOss(cfg, params, dtype="float32", kernels=Kernels(moe="spy_a")), num_slots=2,
                   max_len=32, prefill_chunk=16, min_prefill_chunk=16)
    assert again.steps is engines[0].steps
    again.close()


def test_kernel_names_resolve_per_backend_and_bad_names_are_named():
    assert Kernels().resolve("cpu") == Kernels("reference", "xla", "kperm")
    assert Kernels().resolve("gpu") == Kernels("pallas_gpu", "pallas_gpu", "kperm")
    assert Kernels().resolve("tpu").moe == "pallas_tpu"
    assert Kernels(moe="pallas_gpu", attention="pallas_gpu").resolve("cpu") == Kernels("reference", "xla", "kperm")
    assert Kernels(moe="pallas_gpu_interpret", dequant="asm").resolve("cpu").dequant == "asm"
    assert str(Kernels("pallas_gpu", "xla", "asm")) == "moe=pallas_gpu(asm) attention=xla"
    for field, needle in (("moe", "unknown MoE kernel"), ("attention", "unknown attention implementation"),
                          ("dequant", "unknown MXFP4 dequantization route")):
        with pytest.raises(gptoss_jax.InputError, match=needle):
            Kernels(**{field: "warp-drive"})


def test_profiles_read_by_name(params):
    """The lowered forward names its parts (jax.named_scope), so a device profile is not anonymous fusions."""
    model = gptoss_jax.GptOss(gptoss_jax.get_config("tiny"), params, dtype="float32")
    text = model._apply.lower(model.params, jnp.zeros((1, 4), jnp.int32), None, None, None).as_text(
        debug_info=True)
    for scope in ("attention", "attend", "moe", "route", "experts", "mlp1", "swiglu", "mlp2", "unembed"):
        assert f"/{scope}/" in text or f"/{scope}\"" in text, scope
    assert jax.tree.leaves(params)
