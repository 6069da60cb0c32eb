"""The stable entry points: plain arguments in, a callable model out.

    model = gptoss_jax.load("/ckpt/gpt-oss-20b")          # HF or original layout (auto), or an Orbax folder
    logits = model(tokens)                               # int32 [batch, seq] -> float32 [batch, seq, vocab]
    model = gptoss_jax.build_model("demo", mesh="1,4,2", kernels=Kernels(moe="reference"))   # preset or folder

`build_model` is the one way from options (checkpoint or preset, mesh, dtype, kernels, seed) to a model: the CLI,
the eval harness and the server call it. `load` reads a checkpoint folder; `random_model` draws weights on device
(benchmarks: no disk). A model's kernels (`Kernels`, resolved for the backend when it is built) are part of its
static description and of every compiled step's key.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from gptoss_jax import params as params_lib
from gptoss_jax import sharding
from gptoss_jax.config import PRESETS, ModelConfig, get_config
from gptoss_jax.errors import InputError
from gptoss_jax.kernels import Kernels
from gptoss_jax.model.transformer import KVCache, Transformer

DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


def _dtype(dtype) -> jnp.dtype:
    name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise InputError(f"compute dtype {dtype!r} is not supported; expected one of {sorted(DTYPES)}")
    return jnp.dtype(DTYPES[name])


def resolve_mesh(mesh, replicas: int = 1) -> Mesh | None:
    """None (one device), a Mesh, or a 'data,expert,tensor' shape string such as '1,4,2'.

    In a multi-process job the mesh spans every device of the job (default: all of them on the expert axis, since no
    single device could hold the model), or, with `replicas` > 1, the devices of this process's replica.
    """
    from gptoss_jax import distributed

    if isinstance(mesh, Mesh):
        return mesh
    if replicas == 1 and not distributed.is_initialized():
        return None if mesh is None else sharding.make_mesh(mesh)
    devices = distributed.replica_info(replicas).devices()
    return sharding.make_mesh(mesh or (1, len(devices), 1), devices)


def _kernels(kernels) -> Kernels:
    """None (auto), a Kernels, or a dict of its fields -> the Kernels resolved for this backend."""
    if kernels is None:
        kernels = Kernels()
    elif isinstance(kernels, dict):
        kernels = Kernels(**kernels)
    elif not isinstance(kernels, Kernels):
        raise InputError(f"kernels={kernels!r}: expected a gptoss_jax.Kernels, a dict of its fields, or None")
    return kernels.resolve()


class GptOss:
    """A loaded gpt-oss model: config, weights on a mesh, and jitted forward passes."""

    def __init__(self, cfg: ModelConfig, params, *, mesh=None, dtype="bfloat16", kernels: Kernels | None = None):
        self.cfg = cfg
        self.params = params
        self.mesh = resolve_mesh(mesh)
        self.dtype = _dtype(dtype)
        self.kernels = _kernels(kernels)
        self.module = Transformer(cfg, self.dtype, self.mesh, self.kernels)
        self._apply = jax.jit(self._apply_impl, static_argnames=("kv_len",), donate_argnames=("cache",))

    def __repr__(self) -> str:
        mesh = "one device" if self.mesh is None else "x".join(map(str, self.mesh.devices.shape))
        return f"GptOss({self.cfg.name}, mesh={mesh}, dtype={self.dtype.name}, kernels: {self.kernels})"

    @property
    def key(self) -> tuple:
        """What a compiled program of this model depends on (besides shapes): compiled steps are cached by it."""
        return (self.cfg, self.dtype, self.mesh, self.kernels)

    # ---------------------------------------------------------------------------------------------- internals
    def _apply_impl(self, params, tokens, positions, cache, logits_index, kv_len=None):
        return self.module.apply({"params": params}, tokens, positions, cache, kv_len=kv_len,
                                 logits_index=logits_index)

    @property
    def data_parallel(self) -> int:
        return sharding.mesh_axis_size(self.mesh, sharding.LOGICAL_TO_MESH["batch"])

    def batch_sharding(self, ndim: int = 2):
        if self.mesh is None:
            return None
        return NamedSharding(self.mesh, sharding.logical_spec(("batch",) + (None,) * (ndim - 1)))

    def check_tokens(self, tokens) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.ndim != 2:
            raise InputError(f"token ids must be a [batch, seq] array, got shape {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(f"token ids must be non-empty, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"token ids must be integers, got {arr.dtype}")
        bad = (arr < 0) | (arr >= self.cfg.vocab_size)
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            raise InputError(f"token id {arr[i]} at {list(i)} is outside the vocabulary [0, {self.cfg.vocab_size})")
        if arr.shape[1] > self.cfg.max_context:
            raise InputError(f"sequence of {arr.shape[1]} tokens exceeds the model's context of "
                             f"{self.cfg.max_context}")
        return arr.astype(np.int32)

    # ------------------------------------------------------------------------------------------------- public
    def __call__(self, tokens, *, chunk: int = 1024) -> jax.Array:
        """int32 token ids [batch, seq] -> float32 logits [batch, seq, vocab] (a plain causal forward).

        Sequences longer than `chunk` run as consecutive chunks over a KV cache, so attention memory stays
        O(chunk x seq) rather than O(seq^2).
        """
        arr = self.check_tokens(tokens)
        b, t = arr.shape
        pad = -b % self.data_parallel
        if pad:
            arr = np.concatenate([arr, np.zeros((pad, t), np.int32)])
        if t <= chunk:
            logits, _ = self._apply(self.params, jax.device_put(arr, self.batch_sharding()), None, None, None)
        else:
            n_chunks = -(-t // chunk)
            arr = np.pad(arr, ((0, 0), (0, n_chunks * chunk - t)))
            positions = np.where(np.arange(n_chunks * chunk) < t, np.arange(n_chunks * chunk), -1)
            positions = np.broadcast_to(positions, arr.shape).astype(np.int32)
            cache = self.new_cache(arr.shape[0], n_chunks * chunk)
            parts = []
            for i in range(n_chunks):
                sl = slice(i * chunk, (i + 1) * chunk)
                part, cache = self._apply(self.params, jax.device_put(arr[:, sl], self.batch_sharding()),
                                          jax.device_put(positions[:, sl], self.batch_sharding()), cache, None)
                parts.append(part)
            logits = jnp.concatenate(parts, axis=1)[:, :t]
        return logits[:b] if pad else logits

    def forward(self, tokens, positions=None, cache: KVCache | None = None, *, kv_len: int | None = None,
                logits_index=None):
        """The engine's entry: device arrays in, (logits, cache) out; the cache is donated."""
        return self._apply(self.params, tokens, positions, cache, logits_index, kv_len=kv_len)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache.zeros(self.cfg, batch, max_len, self.dtype, self.mesh)

    def param_bytes(self) -> int:
        return params_lib.param_bytes(self.cfg)


def load(path: str, *, mesh=None, dtype="bfloat16", kernels: Kernels | None = None, show_progress: bool = True,
         counter=None, check_finite: bool = True) -> GptOss:
    """Load a checkpoint folder: the HF or the original release layout (auto-detected), or an Orbax conversion.

    mesh: None (one device), a jax Mesh with axes (data, expert, tensor), or a shape string like '1,4,2'.
    dtype: compute dtype, 'bfloat16' (default) or 'float32'. Weights stay as stored (MXFP4 experts packed).
    kernels: which kernels the model runs (default Kernels(): the best ones for the backend).
    counter: a checkpoint.safetensors_io.ByteCounter that counts the bytes this process reads (safetensors only).
    check_finite: refuse weights holding NaN / inf (one on-device reduction after loading; False skips it).
    In a multi-process job every process calls load() alike; each reads only what its own devices hold.
    """
    import dataclasses

    from gptoss_jax import distributed
    from gptoss_jax.checkpoint import layouts, loader, orbax_io

    mesh = resolve_mesh(mesh)
    dt = _dtype(dtype)
    kernels = _kernels(kernels)      # a bad name fails before anything is read
    if orbax_io.is_orbax(path):
        cfg, params = orbax_io.restore(path, mesh, check_finite=check_finite)
    else:
        located = layouts.locate(path)
        cfg = ModelConfig.from_file(located.config_path)
        # hosts holding different checkpoints would run different programs: fail before reading anything
        distributed.check_same({f"config {k}": v for k, v in dataclasses.asdict(cfg).items()}
                               | {"checkpoint layout": located.layout}, "checkpoints")
        params = loader.load_params(located, cfg, mesh, counter=counter, show_progress=show_progress,
                                    check_finite=check_finite)
    return GptOss(cfg, params, mesh=mesh, dtype=dt, kernels=kernels)


def is_preset(source: str) -> bool:
    """Whether `source` names a config preset (a synthetic model) rather than a checkpoint folder."""
    return source in PRESETS


def build_model(source: str, *, mesh=None, dtype="bfloat16", kernels: Kernels | None = None, seed: int = 0,
                replicas: int = 1, synthetic_dir: str | None = None, show_progress: bool = True,
                counter=None, check_finite: bool = True) -> GptOss:
    """The one way from options to a model (the CLI, the eval harness and the server call it).

    source: a checkpoint folder (either release layout, or an Orbax conversion), or a config preset (PRESETS): the
    preset's random synthetic checkpoint (seed `seed`) is written once under `synthetic_dir` (default
    ~/.cache/gptoss_jax/synthetic) in the HF release layout and loaded through the same loader as a real one.
    mesh: None, a Mesh or 'data,expert,tensor'; in a multi-process job it spans the job's devices, or those of this
    process's replica when `replicas` > 1 (see resolve_mesh). dtype, kernels, show_progress, counter, check_finite:
    as load().
    Bad options (mesh, kernel names, dtype, an unknown source) fail before anything is written or read.
    """
    from gptoss_jax.checkpoint.synthetic import cached_checkpoint

    mesh = resolve_mesh(mesh, replicas)
    _dtype(dtype)
    kernels = _kernels(kernels)
    if is_preset(source):
        path = cached_checkpoint(source, seed, synthetic_dir, show_progress=show_progress)
    else:
        get_config(source)        # a source that is no checkpoint folder is named before anything is read
        path = source
    return load(path, mesh=mesh, dtype=dtype, kernels=kernels, show_progress=show_progress, counter=counter,
                check_finite=check_finite)


def random_model(cfg: ModelConfig | str, *, seed: int = 0, mesh=None, dtype="bfloat16", kernels: Kernels | None = None,
                 show_progress: bool = False) -> GptOss:
    """A model with random weights drawn directly on the device(s) (benchmarks: no disk, no host copy)."""
    cfg = get_config(cfg) if isinstance(cfg, str) else cfg
    mesh = resolve_mesh(mesh)
    return GptOss(cfg, params_lib.init_params(cfg, seed, mesh, show_progress=show_progress), mesh=mesh, dtype=dtype,
                  kernels=kernels)
