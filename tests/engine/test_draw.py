"""The sort-free sampler against the definition (sampling.filter_top + softmax): every route, exact frequencies by
chi-square over many seeds, fresh noise per token, no dependence on batch neighbours."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gptoss_jax.engine import draw as draw_lib
from gptoss_jax.engine import sampling
from gptoss_jax.engine.slots import SlotState

V = 40
N = 6000            # draws a case (one row each, own key)
ALPHA = 1e-4        # chi-square rejection level: a correct sampler fails one case in 10,000 runs


def _logits(kind: str) -> np.ndarray:
    rng = np.random.default_rng({"peaked": 0, "flat": 1, "tied": 2}[kind])
    if kind == "peaked":
        return np.sort(rng.normal(0, 3.0, V)).astype(np.float32)[::-1].copy()
    if kind == "flat":
        return rng.normal(0, 0.3, V).astype(np.float32)
    x = np.round(rng.normal(0, 1.0, V), 1).astype(np.float32)    # many exact ties
    return x


def _keys(n, seed=0):
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), i))(jnp.arange(n))


_draw = jax.jit(draw_lib.draw_with_route)


def expected(y, top_k, top_p, min_p):
    f = np.asarray(sampling.filter_top(jnp.asarray(y)[None], jnp.array([top_k]), jnp.array([top_p], jnp.float32),
                                       jnp.array([min_p], jnp.float32)))[0]
    p = np.exp(f.astype(np.float64) - f.max())
    return p / p.sum()


def chi_square_ok(tokens, p):
    counts = np.bincount(tokens, minlength=V)
    assert counts[p == 0].sum() == 0, f"drew filtered-out tokens {np.flatnonzero(counts * (p == 0))}"
    keep = p > 0
    if keep.sum() == 1:
        return True
    exp = p[keep].astype(np.float64) / p[keep].sum() * len(tokens)
    return stats.chisquare(counts[keep], exp).pvalue > ALPHA


CASES = [  # (logits, top_k, top_p, min_p, route the rows take)
    ("peaked", 0, 0.6, 0.0, 0),       # small nucleus: inside the 16 candidates
    ("peaked", 5, 1.0, 0.0, 0),       # top_k within the candidates
    ("flat", 0, 1.0, 0.85, 0),        # min_p floor above the 16th candidate
    ("flat", 0, 0.9, 0.0, 1),         # nucleus of ~35 tokens: proposals
    ("flat", 30, 1.0, 0.0, 1),        # top_k beyond the candidates, no top_p: proposals (count test)
    ("flat", 0, 0.7, 0.05, 1),        # wide nucleus and a min_p floor below it
    ("flat", 25, 0.8, 0.0, 2),        # top_k > 16 with top_p: P(top k) unknown -> threshold
    ("tied", 20, 0.9, 0.0, 2),        # ties at the boundary, threshold route
    ("tied", 0, 0.8, 0.0, 1),         # ties, proposals
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_route_draws_the_exact_filtered_softmax(case):
    kind, top_k, top_p, min_p, route = CASES[case]
    y = _logits(kind)
    full = lambda v, dt: jnp.full((N,), v, dt)
    tok, took = _draw(jnp.broadcast_to(jnp.asarray(y), (N, V)), full(top_k, jnp.int32), full(top_p, jnp.float32),
                      full(min_p, jnp.float32), _keys(N, seed=100 + case))
    assert (np.asarray(took) == route).mean() > 0.99      # proposals: a row whose 8 draws all miss -> threshold
    assert chi_square_ok(np.asarray(tok), expected(y, top_k, top_p, min_p))


def test_low_acceptance_rows_fall_back_to_the_threshold_and_stay_exact():
    """A flat distribution with top_p 0.15: the nucleus (> 16 tokens) holds ~15% of the mass, so 8 proposals all miss
    for ~27% of rows; those rows take the threshold route, and the mixture is still exact."""
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.05, V).astype(np.float32)
    full = lambda v, dt: jnp.full((N,), v, dt)
    tok, took = _draw(jnp.broadcast_to(jnp.asarray(y), (N, V)), full(0, jnp.int32), full(0.45, jnp.float32),
                      full(0.0, jnp.float32), _keys(N, 3))
    took = np.asarray(took)
    assert (took == 1).any() and (took == 2).any()
    assert chi_square_ok(np.asarray(tok), expected(y, 0, 0.45, 0.0))


def test_masked_rows_only_draw_allowed_tokens():
    y = np.full((64, 300), -np.inf, np.float32)
    allowed = np.random.default_rng(0).choice(300, 40, replace=False)
    y[:, allowed] = 0.0
    tok, _ = _draw(jnp.asarray(y), jnp.zeros(64, jnp.int32), jnp.full((64,), 0.95, jnp.float32),
                   jnp.zeros(64, jnp.float32), _keys(64))
    assert set(np.asarray(tok).tolist()) <= set(allowed.tolist())


def test_a_rows_token_does_not_depend_on_its_neighbours():
    rng = np.random.default_rng(7)
    n = 48
    y = rng.normal(0, 0.3, (n, V)).astype(np.float32)
    top_k = rng.choice([0, 3, 25], n).astype(np.int32)
    top_p = rng.choice([1.0, 0.9, 0.3], n).astype(np.float32)
    keys = _keys(n, 11)
    together, routes = _draw(jnp.asarray(y), jnp.asarray(top_k), jnp.asarray(top_p), jnp.zeros(n), keys)
    assert len(set(np.asarray(routes).tolist())) == 3          # the batch mixes every route
    alone = [int(_draw(jnp.asarray(y[i:i + 1]), jnp.asarray(top_k[i:i + 1]), jnp.asarray(top_p[i:i + 1]),
                       jnp.zeros(1), keys[i:i + 1])[0][0]) for i in range(n)]
    assert np.asarray(together).tolist() == alone


def _rows(n, v, **kw):
    st = SlotState.zeros(n, v, 2)
    fields = {k: np.broadcast_to(np.asarray(val, getattr(st, k).dtype), getattr(st, k).shape)
              for k, val in kw.items()}
    return SlotState(**{**{f: getattr(st, f) for f in st.__dataclass_fields__}, **fields})


_sample = jax.jit(sampling.sample, static_argnums=(3,))


def test_successive_tokens_of_one_request_get_fresh_noise():
    """One request (one seed) sampling the same distribution at token 0, 1, 2, ...: the tokens follow it. Noise that
    ignored the token index would give one token throughout."""
    n = 3000
    y = _logits("flat")
    r = _rows(n, V, temperature=1.0, top_p=0.9, key=np.tile([0, 42], (n, 1)), n_gen=np.arange(n))
    tok = np.asarray(_sample(jnp.broadcast_to(jnp.asarray(y), (n, V)), r, None, sampling.SamplerPlan())[0])
    assert chi_square_ok(tok, expected(y, 0, 0.9, 0.0))


def test_greedy_rows_take_the_argmax_of_the_adjusted_logits():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(0, 2, (16, 300)).astype(np.float32))
    bias = np.zeros((16, 300), np.float32)
    bias[:, 7] = 50.0
    plain = _sample(logits, _rows(16, 300, temperature=0.0), None, sampling.SamplerPlan())[0]
    assert (np.asarray(plain) == np.asarray(logits).argmax(-1)).all()
    biased = _sample(logits, _rows(16, 300, temperature=0.0, bias=bias), None, sampling.SamplerPlan(bias=True))[0]
    assert (np.asarray(biased) == 7).all()


def test_top_logprobs_are_computed_only_as_asked():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(0, 2, (4, 300)).astype(np.float32))
    r = _rows(4, 300, temperature=0.0)
    tok, lp, ids, top_lp, _ = _sample(logits, r, None, sampling.SamplerPlan(num_top=4))
    ref = np.asarray(jax.nn.log_softmax(logits))
    assert ids.shape == (4, 4)
    np.testing.assert_allclose(np.asarray(top_lp), -np.sort(-ref, axis=-1)[:, :4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lp), ref[np.arange(4), np.asarray(tok)], rtol=1e-5, atol=1e-5)
    assert _sample(logits, r, None, sampling.SamplerPlan())[2].shape == (4, 0)
    assert [sampling.top_bucket(n, 20) for n in (0, 1, 3, 5, 16, 17, 20)] == [0, 1, 4, 8, 16, 20, 20]


def test_rows_not_asked_to_draw_never_make_a_route_run():
    """A row outside `active` (a finished slot whose request sampled, a padding row) is left out of every route: a
    row that would need the threshold route alone no longer makes it run, and the active rows' tokens are the same."""
    y = jnp.asarray(np.stack([_logits("peaked"), _logits("flat")]))
    top_k, top_p, min_p = jnp.array([1, 30]), jnp.array([1.0, 0.5], jnp.float32), jnp.zeros((2,), jnp.float32)
    keys = _keys(2, seed=3)
    tok_all, route_all = _draw(y, top_k, top_p, min_p, keys)
    assert route_all.tolist() == [0, 2]              # the flat row with top_k 30 + top_p goes to the threshold
    tok, route = _draw(y, top_k, top_p, min_p, keys, None, jnp.array([True, False]))
    assert route.tolist() == [0, 0] and int(tok[0]) == int(tok_all[0])
