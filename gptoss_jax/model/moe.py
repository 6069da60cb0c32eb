"""Mixture of experts: router (top-k logits, softmax over those k), MXFP4 experts with the clamped, interleaved
SwiGLU, weighted sum. Expert-parallel: every device holds only its experts and computes their share for the tokens
of its data replica; one psum over the expert axes combines the shares.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from gptoss_jax import sharding
from gptoss_jax.kernels import REFERENCE, Kernels, expert_matmul
from gptoss_jax.config import ModelConfig
from gptoss_jax.model.common import param_from_spec, rms_norm


def swiglu(h: jax.Array, alpha: float, limit: float) -> jax.Array:
    """h [..., 2I] with glu and linear halves INTERLEAVED (even, odd columns) -> [..., I]."""
    glu, lin = h[..., 0::2], h[..., 1::2]
    glu = jnp.minimum(glu, limit)
    lin = jnp.clip(lin, -limit, limit)
    return glu * jax.nn.sigmoid(alpha * glu) * (lin + 1.0)


def route(h: jax.Array, gate_w: jax.Array, gate_b: jax.Array, k: int, precision=None):
    """Router: logits [N, E] -> (expert ids [N, k] sorted by logit, softmax weights [N, k] f32)."""
    logits = jnp.einsum("nh,eh->ne", h, gate_w.astype(h.dtype), preferred_element_type=jnp.float32,
                        precision=precision) + gate_b.astype(jnp.float32)
    top_v, top_i = lax.top_k(logits, k)
    return top_i.astype(jnp.int32), jax.nn.softmax(top_v, axis=-1)


COUNTING_SORT_MAX = 1 << 16   # (token, choice) rows x experts up to which routing uses a counting sort


def group_by_expert(row_expert: jax.Array, n_groups: int):
    """Rows grouped by expert: row_expert [M] in [0, n_groups] (n_groups: not here) -> (dest [M] the sorted
    position of each row, source [M] the row at each sorted position, group_sizes [n_groups] int32).

    The sort is stable. For a decode batch (M x groups small) it is a counting sort: each row's rank among the rows
    of its expert from a cumulative one-hot count, plus its expert's offset; no sort and no inverse permutation (the
    results come back by gathering at dest). Bigger batches use one argsort."""
    m = row_expert.shape[0]
    sizes = jnp.bincount(row_expert, length=n_groups + 1).astype(jnp.int32)
    if m * (n_groups + 1) <= COUNTING_SORT_MAX:
        onehot = row_expert[:, None] == jnp.arange(n_groups + 1)[None, :]
        rank = jnp.sum(jnp.cumsum(onehot, axis=0, dtype=jnp.int32) * onehot, axis=1) - 1
        offset = jnp.cumsum(sizes) - sizes
        dest = offset[row_expert] + rank
        source = jnp.zeros((m,), jnp.int32).at[dest].set(jnp.arange(m, dtype=jnp.int32))
    else:
        source = jnp.argsort(row_expert, stable=True).astype(jnp.int32)
        dest = jnp.zeros((m,), jnp.int32).at[source].set(jnp.arange(m, dtype=jnp.int32))
    return dest, source, sizes[:n_groups]


def experts_local(cfg: ModelConfig, h, top_i, top_w, w1, b1, w2, b2, expert_offset, dtype, layer=None,
                  kernel: Kernels = REFERENCE):
    """The share of the experts held here, [expert_offset, expert_offset + E_local), for tokens h [N, H].

    w1/w2: this device's experts, stacked over layers ([P, E_local, N, K]) when `layer` is given (read in place
    by the kernels), else one layer's. b1/b2: this layer's biases [E_local, ...]. kernel: resolved Kernels (.moe,
    .dequant pick the expert matmul).
    Assignments to other experts contribute zero. Returns [N, H] float32.
    """
    n, k = top_i.shape
    e_loc = b1.shape[0]
    local = top_i - expert_offset
    mine = (local >= 0) & (local < e_loc)
    row_expert = jnp.where(mine, local, e_loc).reshape(-1)           # [N*k], e_loc = not here
    dest, source, group_sizes = group_by_expert(row_expert, e_loc)
    x_rows = h[source // k]                                            # [M, H], rows grouped by expert

    # the biases go in the expert matmul (the GPU kernel adds its expert's row in its epilogue); the SwiGLU stays
    # between the two (with split K at decode it needs the whole sum)
    matmul = lambda rows, w, b: expert_matmul(rows, w, group_sizes, impl=kernel.moe, dequant=kernel.dequant,
                                              layer=layer, bias=b)
    with jax.named_scope("mlp1"):
        a = matmul(x_rows, w1, b1)
    with jax.named_scope("swiglu"):
        a = swiglu(a, cfg.swiglu_alpha, cfg.swiglu_limit).astype(dtype)
    with jax.named_scope("mlp2"):
        y = matmul(a, w2, b2)
    # back to (token, choice) order by gathering at dest; choices routed to other devices' experts weigh 0 (their
    # rows are past the groups: zeros)
    y = y[dest].reshape(n, k, -1)
    w = jnp.where(mine, top_w, 0.0)
    return jnp.einsum("nkh,nk->nh", y, w, precision=lax.Precision.HIGHEST)


class MoE(nn.Module):
    cfg: ModelConfig
    sliding: bool
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kernels: Kernels = REFERENCE   # resolved names (GptOss resolves them)

    @nn.compact
    def __call__(self, x, layer=0):
        """x [B,T,H] residual stream -> MoE output [B,T,H] float32; `layer` indexes the stacked weights."""
        cfg, dt, mesh = self.cfg, self.dtype, self.mesh
        kind = "sliding" if self.sliding else "full"
        stacked = lambda name: param_from_spec(self, name, ("layers", kind, "mlp", name))
        p = lambda name: stacked(name)[layer]
        precision = lax.Precision.HIGHEST if dt == jnp.float32 else None
        b, t, hid = x.shape
        h = rms_norm(x, p("norm"), cfg.rms_norm_eps).astype(dt)
        with jax.named_scope("route"):
            top_i, top_w = route(h.reshape(b * t, hid), p("gate_w"), p("gate_b"), cfg.experts_per_token, precision)
        top_i, top_w = top_i.reshape(b, t, -1), top_w.reshape(b, t, -1)
        # expert weights stay stacked over layers: the expert matmul reads this layer's routed experts in place
        weights = (stacked("mlp1_w"), p("mlp1_b"), stacked("mlp2_w"), p("mlp2_b"))

        def shard(h, top_i, top_w, layer, w1, b1, w2, b2):
            bl = h.shape[0]
            if mesh is None:
                offset = 0
            else:
                offset = lax.axis_index(sharding.EXPERT_AXES) * b1.shape[0]
            with jax.named_scope("experts"):
                y = experts_local(cfg, h.reshape(bl * t, hid), top_i.reshape(bl * t, -1), top_w.reshape(bl * t, -1),
                                  w1, b1, w2, b2, offset, dt, layer, self.kernels)
            if mesh is not None:
                y = lax.psum(y, sharding.EXPERT_AXES)
            return y.reshape(bl, t, hid)

        layer = jnp.asarray(layer, jnp.int32)
        if mesh is None:
            return shard(h, top_i, top_w, layer, *weights)
        tok = P(sharding.LOGICAL_TO_MESH["batch"])
        stacked_spec, layer_spec = P(None, sharding.EXPERT_AXES), P(sharding.EXPERT_AXES)
        w_specs = (jax.tree.map(lambda _: stacked_spec, weights[0]), layer_spec,
                   jax.tree.map(lambda _: stacked_spec, weights[2]), layer_spec)
        return jax.shard_map(shard, mesh=mesh, in_specs=(tok, tok, tok, P(), *w_specs), out_specs=tok,
                             check_vma=False)(h, top_i, top_w, layer, *weights)
