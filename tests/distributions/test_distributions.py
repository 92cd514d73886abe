"""phalanx.distributions against torch.distributions on the same parameters: log_prob,
entropy, mean, variance, shapes and the gradients of log_prob/entropy with respect to the
parameters; KL between same families (values and gradients); rsample gradients (float64
finite differences on a fixed seed); sampling statistics; validation errors."""
import numpy as np
import pytest
import torch
import torch.distributions as TD

import phalanx as px
import phalanx.distributions as D
from phalanx.autograd import gradcheck

RNG = np.random.default_rng(3)


def spd(n, batch=()):
    m = RNG.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


def lower(n, batch=()):
    low = np.tril(RNG.standard_normal(batch + (n, n)), -1)
    return low + np.eye(n) * RNG.uniform(0.5, 2.0, batch + (n,))[..., None]


# (id, class name, parameters by keyword, values to score)
CASES = [
    ("normal", "Normal", {"loc": RNG.standard_normal((3,)), "scale": RNG.uniform(0.5, 2, (3,))},
     RNG.standard_normal((4, 3))),
    ("normal_broadcast", "Normal", {"loc": RNG.standard_normal((2, 1)), "scale":
                                    RNG.uniform(0.5, 2, (3,))}, RNG.standard_normal((2, 3))),
    ("uniform", "Uniform", {"low": np.array([-1.0, 0.0]), "high": np.array([1.0, 3.0])},
     np.array([[0.5, 2.9], [-0.99, 0.1]])),
    ("bernoulli_probs", "Bernoulli", {"probs": np.array([0.1, 0.5, 0.9, 0.0, 1.0])},
     np.array([1.0, 0.0, 1.0, 0.0, 1.0])),
    ("bernoulli_logits", "Bernoulli", {"logits": np.array([-3.0, 0.0, 2.0, 40.0])},
     np.array([[1.0, 0.0, 1.0, 0.0]])),
    ("categorical_probs", "Categorical", {"probs": RNG.uniform(0.1, 1, (2, 4))},
     np.array([[3, 0], [1, 2]])),
    ("categorical_logits", "Categorical", {"logits": RNG.standard_normal((3, 5))},
     np.array([4, 0, 2])),
    ("categorical_zero_prob", "Categorical", {"probs": np.array([0.0, 0.3, 0.7])},
     np.array([1, 2])),
    ("categorical_masked_logits", "Categorical",  # invalid actions masked with -inf
     {"logits": np.array([[0.5, -np.inf, 1.0], [-np.inf, 2.0, -1.0]])}, np.array([2, 1])),
    ("mvn_covariance", "MultivariateNormal", {"loc": RNG.standard_normal((2, 3)),
                                              "covariance_matrix": spd(3, (2,))},
     RNG.standard_normal((4, 2, 3))),
    ("mvn_scale_tril", "MultivariateNormal", {"loc": RNG.standard_normal((3,)),
                                              "scale_tril": lower(3)},
     RNG.standard_normal((5, 3))),
    ("mvn_precision", "MultivariateNormal", {"loc": RNG.standard_normal((2,)),
                                             "precision_matrix": spd(2)},
     RNG.standard_normal((3, 2))),
    ("exponential", "Exponential", {"rate": RNG.uniform(0.5, 3, (2, 3))},
     RNG.uniform(0, 4, (2, 3))),
    ("laplace", "Laplace", {"loc": RNG.standard_normal(4), "scale": RNG.uniform(0.5, 2, 4)},
     RNG.standard_normal((3, 4))),
    ("one_hot_categorical", "OneHotCategorical", {"probs": RNG.uniform(0.1, 1, (2, 3))},
     np.eye(3)[[0, 2]]),
    ("mvn_diagonal", "MultivariateNormal", {"loc": RNG.standard_normal((4,)),
                                            "covariance_matrix": np.diag(RNG.uniform(0.5, 2, 4))},
     RNG.standard_normal((2, 4))),
]
INTEGER_VALUES = {"Categorical"}


def build(mod, cls, params, grad=True):
    tensors = {k: mod.tensor(v, requires_grad=grad) for k, v in params.items()}
    return getattr(mod.distributions if mod is px else TD, cls)(**tensors), tensors


def close(p, t, **kw):
    np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), **{
        "rtol": 1e-6, "atol": 1e-9, **kw})


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(case):
    _, cls, params, values = case
    pd, pparams = build(px, cls, params)
    td, tparams = build(torch, cls, params)
    assert tuple(pd.batch_shape) == tuple(td.batch_shape)
    assert tuple(pd.event_shape) == tuple(td.event_shape)
    vdtype = np.int64 if cls in INTEGER_VALUES else np.float64
    pv, tv = px.tensor(values.astype(vdtype)), torch.tensor(values.astype(vdtype))
    plp, tlp = pd.log_prob(pv), td.log_prob(tv)
    close(plp, tlp)
    close(pd.entropy(), td.entropy())
    with np.errstate(invalid="ignore"):
        close(pd.mean, td.mean)
        close(pd.variance, td.variance)
        close(pd.stddev, td.stddev)
    for attr in ("scale_tril", "covariance_matrix", "precision_matrix", "probs", "logits"):
        if hasattr(td, attr):
            close(getattr(pd, attr), getattr(td, attr), atol=1e-8)
    # finite log-probs only: a zero-probability value gives -inf and a nan gradient
    keep = np.isfinite(tlp.detach().numpy())
    (px.where(px.tensor(keep), plp, 0.0).sum() + pd.entropy().sum()).backward()
    (torch.where(torch.tensor(keep), tlp, 0.0).sum() + td.entropy().sum()).backward()
    for name in params:
        close(pparams[name].grad, tparams[name].grad, rtol=1e-5, atol=1e-8)


def test_independent_matches_torch():
    loc, scale = RNG.standard_normal((2, 3)), RNG.uniform(0.5, 2, (2, 3))
    pd = D.Independent(D.Normal(px.tensor(loc), px.tensor(scale)), 1)
    td = TD.Independent(TD.Normal(torch.tensor(loc), torch.tensor(scale)), 1)
    assert (tuple(pd.batch_shape), tuple(pd.event_shape)) == ((2,), (3,))
    value = RNG.standard_normal((4, 2, 3))
    close(pd.log_prob(px.tensor(value)), td.log_prob(torch.tensor(value)))
    close(pd.entropy(), td.entropy())
    q = D.Independent(D.Normal(px.tensor(loc + 1), px.tensor(scale * 2)), 1)
    tq = TD.Independent(TD.Normal(torch.tensor(loc + 1), torch.tensor(scale * 2)), 1)
    close(D.kl_divergence(pd, q), TD.kl_divergence(td, tq))
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims <= "):
        D.Independent(D.Normal(0.0, 1.0), 1)


# ---- KL between same families ----------------------------------------------------------
KL_CASES = [
    ("Normal", {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)},
     {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)}),
    ("Uniform", {"low": np.array([0.0, -1.0]), "high": np.array([1.0, 1.0])},
     {"low": np.array([-1.0, -0.5]), "high": np.array([2.0, 1.0])}),  # second: inf
    ("Bernoulli", {"probs": np.array([0.2, 0.7, 0.0, 1.0])},
     {"probs": np.array([0.5, 0.1, 0.3, 0.6])}),
    ("Bernoulli", {"logits": np.array([-2.0, 0.5])}, {"logits": np.array([1.0, 3.0])}),
    ("Categorical", {"probs": np.array([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5]])},
     {"probs": np.array([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])}),
    ("Categorical", {"logits": RNG.standard_normal((2, 4))},
     {"logits": RNG.standard_normal((2, 4))}),
    ("MultivariateNormal", {"loc": RNG.standard_normal((2, 3)), "scale_tril": lower(3, (2,))},
     {"loc": RNG.standard_normal(3), "covariance_matrix": spd(3)}),
    ("Exponential", {"rate": RNG.uniform(0.5, 3, 3)}, {"rate": RNG.uniform(0.5, 3, 3)}),
    ("Laplace", {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)},
     {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)}),
    ("OneHotCategorical", {"logits": RNG.standard_normal((2, 4))},
     {"probs": RNG.uniform(0.1, 1, (2, 4))}),
    ("MultivariateNormal", {"loc": RNG.standard_normal(3), "scale_tril": lower(3)},
     {"loc": RNG.standard_normal((2, 3)), "covariance_matrix": spd(3)}),  # batches broadcast
    ("MultivariateNormal", {"loc": RNG.standard_normal(2), "precision_matrix": spd(2)},
     {"loc": RNG.standard_normal(2), "scale_tril": lower(2)}),
]


@pytest.mark.parametrize("case", KL_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(KL_CASES)])
def test_kl_matches_torch(case):
    cls, p_params, q_params = case
    pp, ppar = build(px, cls, p_params)
    pq, qpar = build(px, cls, q_params)
    tp, tppar = build(torch, cls, p_params)
    tq, tqpar = build(torch, cls, q_params)
    pkl, tkl = D.kl_divergence(pp, pq), TD.kl_divergence(tp, tq)
    close(pkl, tkl)
    finite = np.isfinite(tkl.detach().numpy())
    px.where(px.tensor(finite), pkl, 0.0).sum().backward()
    torch.where(torch.tensor(finite), tkl, 0.0).sum().backward()
    for ours, theirs in ((ppar, tppar), (qpar, tqpar)):
        for name in ours:
            if theirs[name].grad is not None:
                close(ours[name].grad, theirs[name].grad, rtol=1e-5, atol=1e-8)


def test_kl_registry_and_missing_pair():
    class Wide(D.Normal):
        pass

    assert float(D.kl_divergence(Wide(0.0, 1.0), D.Normal(0.0, 1.0))) == 0.0
    with pytest.raises(NotImplementedError, match="No KL.*Normal.*Categorical"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Categorical(logits=px.zeros(3)))
    # two exponential families meet in the Bregman rule, which needs one family (as torch)
    with pytest.raises(NotImplementedError, match="different exponential families"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Bernoulli(0.5))

    @D.register_kl(Wide, D.Normal)
    def _kl_wide(p, q):
        return px.tensor(42.0)
    assert float(D.kl_divergence(Wide(0.0, 1.0), D.Normal(0.0, 1.0))) == 42.0
    assert float(D.kl_divergence(D.Normal(0.0, 1.0), D.Normal(0.0, 1.0))) == 0.0


# ---- rsample: gradients flow to the parameters ------------------------------------------
def _seeded(fn):
    def run(*params):
        px.manual_seed(5)
        return fn(*params)
    return run


RSAMPLE = [
    ("normal", lambda loc, scale: D.Normal(loc, scale).rsample((4,)) ** 2,
     [RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)]),
    ("uniform", lambda low, high: D.Uniform(low, high).rsample((4,)) ** 2,
     [np.array([-1.0, 0.0]), np.array([1.0, 3.0])]),
    ("mvn_scale_tril", lambda loc, tril: D.MultivariateNormal(
        loc, scale_tril=tril.tril()).rsample((3,)) ** 2, [RNG.standard_normal(3), lower(3)]),
    ("mvn_covariance", lambda loc, m: D.MultivariateNormal(
        loc, covariance_matrix=m @ m.mT + 3 * px.eye(3, dtype=px.float64)).rsample((3,)),
     [RNG.standard_normal(3), RNG.standard_normal((3, 3))]),
    ("mvn_precision", lambda loc, m: D.MultivariateNormal(
        loc, precision_matrix=m @ m.mT + 2 * px.eye(2, dtype=px.float64)).rsample((3,)),
     [RNG.standard_normal(2), RNG.standard_normal((2, 2))]),
    ("exponential", lambda rate: D.Exponential(rate).rsample((4,)) ** 2,
     [RNG.uniform(0.5, 3, 3)]),
    ("laplace", lambda loc, scale: D.Laplace(loc, scale).rsample((4,)) ** 2,
     [RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)]),
    ("independent", lambda loc, scale: D.Independent(D.Normal(loc, scale), 1).rsample((2,)),
     [RNG.standard_normal((2, 3)), RNG.uniform(0.5, 2, (2, 3))]),
]


@pytest.mark.parametrize("case", RSAMPLE, ids=[c[0] for c in RSAMPLE])
def test_rsample_gradients(case):
    _, fn, arrays = case
    params = [px.tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(_seeded(fn), params)
    with pytest.raises(NotImplementedError, match="rsample|reparameterised"):
        D.Categorical(logits=px.zeros(3)).rsample()


def test_mvn_rsample_follows_loc_plus_tril_noise():
    loc, tril = RNG.standard_normal(3), lower(3)
    px.manual_seed(2)
    x = D.MultivariateNormal(px.tensor(loc), scale_tril=px.tensor(tril)).rsample((5,))
    px.manual_seed(2)
    eps = px.randn(5, 3, dtype=px.float64).numpy()
    np.testing.assert_allclose(x.numpy(), loc + eps @ tril.T, rtol=1e-10)


# ---- sampling statistics and seeding ----------------------------------------------------
def test_sample_statistics():
    px.manual_seed(0)
    n = 40000
    x = D.Normal(px.tensor([1.0, -2.0]), px.tensor([0.5, 3.0])).sample((n,)).numpy()
    np.testing.assert_allclose(x.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(x.std(0), [0.5, 3.0], rtol=0.03)
    u = D.Uniform(px.tensor(2.0), px.tensor(5.0)).sample((n,)).numpy()
    assert 2.0 <= u.min() and u.max() < 5.0
    np.testing.assert_allclose([u.mean(), u.var()], [3.5, 0.75], rtol=0.03)
    b = D.Bernoulli(probs=px.tensor([0.1, 0.8])).sample((n,)).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_allclose(b.mean(0), [0.1, 0.8], atol=0.015)
    probs = np.array([[0.2, 0.0, 0.8], [0.5, 0.25, 0.25]])
    c = D.Categorical(probs=px.tensor(probs)).sample((n,)).numpy()
    assert c.shape == (n, 2) and c.dtype == np.int64
    freq = np.stack([(c == k).mean(0) for k in range(3)], 1)
    np.testing.assert_allclose(freq, probs, atol=0.015)
    cov = spd(3)
    m = D.MultivariateNormal(px.tensor([1.0, 0.0, -1.0]), covariance_matrix=px.tensor(cov))
    s = m.sample((n,)).numpy()
    np.testing.assert_allclose(s.mean(0), [1.0, 0.0, -1.0], atol=0.1)
    np.testing.assert_allclose(np.cov(s.T), cov, rtol=0.05, atol=0.1)
    e = D.Exponential(px.tensor([0.5, 4.0])).sample((n,)).numpy()
    assert e.min() >= 0
    np.testing.assert_allclose([e.mean(0), e.var(0)], [[2.0, 0.25], [4.0, 1 / 16]], rtol=0.05)
    lap = D.Laplace(px.tensor(1.0), px.tensor(2.0)).sample((n,)).numpy()
    np.testing.assert_allclose([lap.mean(), lap.var()], [1.0, 8.0], rtol=0.05, atol=0.05)
    oh = D.OneHotCategorical(probs=px.tensor([0.1, 0.6, 0.3])).sample((n,)).numpy()
    assert oh.shape == (n, 3) and (oh.sum(1) == 1).all()
    np.testing.assert_allclose(oh.mean(0), [0.1, 0.6, 0.3], atol=0.015)
    loc = px.zeros(3, requires_grad=True)
    m = D.MultivariateNormal(loc, covariance_matrix=px.tensor(cov))
    assert not m.sample().requires_grad and m.rsample().requires_grad


def test_sampling_is_seeded_by_manual_seed():
    def draws():
        px.manual_seed(11)
        return [D.Normal(0.0, 1.0).sample((3,)).numpy(),
                D.Categorical(logits=px.zeros(4)).sample((5,)).numpy(),
                D.Bernoulli(0.5).sample((6,)).numpy()]
    for a, b in zip(draws(), draws()):
        np.testing.assert_array_equal(a, b)


# ---- validation --------------------------------------------------------------------------
def _torch_message(fn):
    try:
        fn(torch, TD)
    except (ValueError, RuntimeError) as e:
        return str(e).replace("torch.Size", "phalanx.Size").split("\n")[0]
    raise AssertionError("torch did not raise")


INVALID = [
    ("negative_scale", lambda m, d: d.Normal(m.tensor([0.0, 1.0]), m.tensor([1.0, -1.0]))),
    ("uniform_low_high", lambda m, d: d.Uniform(1.0, 0.0)),
    ("bernoulli_probs", lambda m, d: d.Bernoulli(probs=m.tensor([0.5, 2.0]))),
    ("categorical_probs", lambda m, d: d.Categorical(probs=m.tensor([0.5, -1.0]))),
    ("categorical_neither", lambda m, d: d.Categorical()),
    ("bernoulli_both", lambda m, d: d.Bernoulli(probs=m.tensor(0.5), logits=m.tensor(0.0))),
    ("mvn_not_pd", lambda m, d: d.MultivariateNormal(
        m.zeros(2), m.tensor([[1.0, 2.0], [2.0, 1.0]]))),
    ("mvn_two_matrices", lambda m, d: d.MultivariateNormal(
        m.zeros(2), m.eye(2), scale_tril=m.eye(2))),
    ("mvn_0d_loc", lambda m, d: d.MultivariateNormal(m.tensor(0.0), m.eye(1))),
    ("value_not_tensor", lambda m, d: d.Normal(0.0, 1.0).log_prob(1.0)),
    ("value_outside_support", lambda m, d: d.Categorical(logits=m.zeros(3)).log_prob(
        m.tensor(4))),
    ("value_event_shape", lambda m, d: d.MultivariateNormal(m.zeros(3), m.eye(3)).log_prob(
        m.zeros(2))),
    ("bernoulli_value", lambda m, d: d.Bernoulli(0.3).log_prob(m.tensor(0.5))),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_validation_errors_match_torch(case):
    _, fn = case
    expected = _torch_message(fn)
    with pytest.raises(ValueError) as info:
        fn(px, D)
    assert str(info.value).split("\n")[0] == expected


def test_validation_can_be_switched_off():
    D.Normal(0.0, -1.0, validate_args=False)
    D.Distribution.set_default_validate_args(False)
    try:
        with np.errstate(invalid="ignore"):
            assert np.isnan(D.Normal(0.0, -1.0).log_prob(px.tensor(0.0)).item())
        D.Bernoulli(0.3).log_prob(px.tensor(0.5))  # outside the support: not checked
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError):
        D.Normal(0.0, -1.0)


def test_expand():
    d = D.Normal(px.tensor([0.0, 1.0]), px.tensor([1.0, 2.0])).expand((3, 2))
    assert tuple(d.batch_shape) == (3, 2) and tuple(d.sample().shape) == (3, 2)
    c = D.Categorical(logits=px.zeros(4)).expand((5,))
    assert tuple(c.sample((2,)).shape) == (2, 5)
    m = D.MultivariateNormal(px.zeros(2), px.eye(2)).expand((3,))
    assert tuple(m.log_prob(px.zeros(3, 2)).shape) == (3,)


# ---- multinomial -------------------------------------------------------------------------
def test_multinomial_with_and_without_replacement():
    px.manual_seed(1)
    w = px.tensor([[1.0, 0.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    draws = px.multinomial(w, 4)
    assert draws.dtype is px.int64 and tuple(draws.shape) == (2, 4)
    row0 = draws[0].tolist()
    assert sorted(row0[:3]) == [0, 2, 3] and row0[3] == 1  # zero weight only once others run out
    assert sorted(draws[1].tolist()) == [0, 1, 2, 3]
    many = w.multinomial(20000, replacement=True).numpy()
    np.testing.assert_allclose((many[0][:, None] == np.arange(4)).mean(0),
                               [0.125, 0.0, 0.375, 0.5], atol=0.015)
    one = px.multinomial(px.tensor([0.2, 0.8]), 1)
    assert tuple(one.shape) == (1,)
    # the first draw without replacement follows the weights
    firsts = np.array([px.multinomial(px.tensor([1.0, 3.0]), 2)[0].item()
                       for _ in range(2000)])
    assert abs((firsts == 1).mean() - 0.75) < 0.04
    g = px.Generator().manual_seed(3)
    a = px.multinomial(w, 2, generator=g).tolist()
    g.manual_seed(3)
    assert a == px.multinomial(w, 2, generator=g).tolist()


@pytest.mark.parametrize("args, match", [
    (([1.0, -1.0], 1, True), "element < 0"),
    (([0.0, 0.0], 1, True), "sum of probabilities"),
    (([1.0, 1.0], 3, False), "cannot sample"),
])
def test_multinomial_errors(args, match):
    probs, n, replacement = args
    with pytest.raises(RuntimeError, match=match):
        px.multinomial(px.tensor(probs), n, replacement)
