"""The families added to phalanx.distributions (Gumbel ... LKJCholesky, ExponentialFamily)
against torch.distributions on the same parameters: log_prob, entropy, moments, cdf/icdf,
shapes and the gradients of all of them with respect to the parameters; every KL PyTorch
registers; rsample gradients (torch fed the same base draws, or finite differences on a fixed
seed, or the pathwise gradient of the sample mean); sampling statistics; expand; validation
errors."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributions as TD

import phalanx as px
import phalanx.distributions as D
from phalanx.autograd import gradcheck

RNG = np.random.default_rng(11)
NO_GRAD = {"total_count", "df_int"}   # counts: not differentiated


@pytest.fixture(autouse=True)
def torch_float64():
    """torch's GeneralizedPareto compares with a default-dtype tensor: run torch in
    float64 so that float64 parameters work there."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def spd(n, batch=(), rng=RNG):
    m = rng.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


def corr_cholesky(n, batch=()):
    c = spd(n, batch)
    d = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
    return np.linalg.cholesky(c / d[..., :, None] / d[..., None, :])


def build(mod, cls, params, extra=None):
    tensors = {k: mod.tensor(v, requires_grad=k not in NO_GRAD) for k, v in params.items()}
    dists = D if mod is px else TD
    return getattr(dists, cls)(**tensors, **(extra or {})), tensors


def close(p, t, rtol=1e-10, atol=1e-12):
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    np.testing.assert_allclose(p.detach().numpy(), t, rtol=rtol, atol=atol)


def torch_has(fn):
    try:
        return fn()
    except NotImplementedError:
        return None


# (id, class, parameters, extra arguments, values to score)
CASES = [
    ("gumbel", "Gumbel", {"loc": RNG.standard_normal((2, 3)), "scale": RNG.uniform(0.5, 2, 3)},
     {}, RNG.standard_normal((4, 2, 3))),
    ("half_normal", "HalfNormal", {"scale": RNG.uniform(0.5, 2, 3)}, {},
     np.array([[0.0, 0.5, 2.0], [1.0, 3.0, 0.1]])),
    ("half_cauchy", "HalfCauchy", {"scale": RNG.uniform(0.5, 2, 3)}, {},
     np.array([[0.0, 0.5, 2.0], [1.0, 30.0, 0.1]])),
    ("weibull", "Weibull", {"scale": RNG.uniform(0.5, 2, 3),
                            "concentration": np.array([0.7, 1.0, 2.5])}, {},
     RNG.uniform(0.1, 3, (2, 3))),
    ("pareto", "Pareto", {"scale": np.array([1.0, 0.5, 0.8]),
                          "alpha": np.array([0.8, 1.5, 3.0])}, {},
     RNG.uniform(1.0, 4, (2, 3))),
    ("geometric_probs", "Geometric", {"probs": np.array([0.2, 0.7, 0.95])}, {},
     np.array([[0.0, 3.0, 0.0], [5.0, 1.0, 2.0]])),
    ("geometric_logits", "Geometric", {"logits": RNG.standard_normal(3)}, {},
     np.array([[0.0, 3.0, 0.0], [5.0, 1.0, 2.0]])),
    ("negative_binomial_probs", "NegativeBinomial",
     {"total_count": np.array([1.0, 4.5, 10.0]), "probs": np.array([0.3, 0.6, 0.9])}, {},
     np.array([[0.0, 2.0, 5.0], [7.0, 0.0, 1.0]])),
    ("negative_binomial_logits", "NegativeBinomial",
     {"total_count": np.array([2.0, 3.0]), "logits": RNG.standard_normal(2)}, {},
     np.array([[0.0, 2.0], [7.0, 1.0]])),
    ("multinomial_probs", "Multinomial", {"probs": RNG.uniform(0.1, 1, (2, 3))},
     {"total_count": 5}, np.array([[[1.0, 2, 2], [0, 0, 5]], [[5, 0, 0], [1, 1, 3]]])),
    ("multinomial_logits", "Multinomial", {"logits": RNG.standard_normal((2, 4))},
     {"total_count": 3}, np.array([[3.0, 0, 0, 0], [1, 1, 0, 1]])),
    ("lowrank_mvn", "LowRankMultivariateNormal",
     {"loc": RNG.standard_normal((2, 4)), "cov_factor": RNG.standard_normal((4, 2)),
      "cov_diag": RNG.uniform(0.5, 2, 4)}, {}, RNG.standard_normal((3, 2, 4))),
    ("lowrank_mvn_batched_factor", "LowRankMultivariateNormal",
     {"loc": RNG.standard_normal(3), "cov_factor": RNG.standard_normal((2, 3, 1)),
      "cov_diag": RNG.uniform(0.5, 2, (2, 3))}, {}, RNG.standard_normal((4, 1, 3))),
    ("one_hot_straight_through", "OneHotCategoricalStraightThrough",
     {"logits": RNG.standard_normal((2, 3))}, {}, np.eye(3)[[0, 2]]),
    ("von_mises", "VonMises", {"loc": RNG.standard_normal(4),
                               "concentration": np.array([0.5, 2.0, 3.75, 10.0])}, {},
     RNG.uniform(-3, 3, (2, 4))),
    ("kumaraswamy", "Kumaraswamy", {"concentration1": np.array([0.5, 1.5, 3.0]),
                                    "concentration0": np.array([2.0, 0.7, 1.5])}, {},
     RNG.uniform(0.05, 0.95, (2, 3))),
    ("fisher_snedecor", "FisherSnedecor", {"df1": np.array([1.0, 3.0, 6.0]),
                                           "df2": np.array([1.5, 3.0, 8.0])}, {},
     RNG.uniform(0.1, 3, (2, 3))),
    ("continuous_bernoulli_probs", "ContinuousBernoulli",
     {"probs": np.array([0.1, 0.4995, 0.5, 0.7, 0.99])}, {}, RNG.uniform(0, 1, (2, 5))),
    ("continuous_bernoulli_logits", "ContinuousBernoulli",
     {"logits": np.array([-2.0, 0.0, 0.001, 1.5])}, {}, RNG.uniform(0, 1, (2, 4))),
    ("continuous_bernoulli_lims", "ContinuousBernoulli",
     {"probs": np.array([0.3, 0.45, 0.56])}, {"lims": (0.4, 0.55)}, RNG.uniform(0, 1, (2, 3))),
    ("inverse_gamma", "InverseGamma", {"concentration": np.array([0.5, 1.5, 3.0]),
                                       "rate": RNG.uniform(0.5, 2, 3)}, {},
     RNG.uniform(0.1, 3, (2, 3))),
    ("generalized_pareto", "GeneralizedPareto",
     {"loc": np.array([0.0, 0.5, -1.0]), "scale": RNG.uniform(0.5, 2, 3),
      "concentration": np.array([0.0, 0.3, -0.2])}, {}, RNG.uniform(0.6, 1.5, (2, 3))),
    ("logistic_normal", "LogisticNormal", {"loc": RNG.standard_normal((2, 3)),
                                           "scale": RNG.uniform(0.5, 2, (2, 3))}, {},
     np.random.default_rng(1).dirichlet(np.ones(4), (5, 2))),
    ("wishart_covariance", "Wishart", {"df": np.array([3.0, 5.5]),
                                       "covariance_matrix": spd(3, (2,))}, {},
     spd(3, (4, 2))),
    ("wishart_scale_tril", "Wishart", {"df": np.array(4.0),
                                       "scale_tril": np.linalg.cholesky(spd(2))}, {},
     spd(2, (3,))),
    ("wishart_precision", "Wishart", {"df": np.array([2.5, 6.0]), "precision_matrix": spd(2)},
     {}, spd(2, (3, 1))),
    ("lkj_cholesky", "LKJCholesky", {"concentration": np.array([0.5, 1.0, 2.5])},
     {"dim": 3}, corr_cholesky(3, (2, 3))),
    ("lkj_cholesky_2x2", "LKJCholesky", {"concentration": np.array(1.7)}, {"dim": 2},
     corr_cholesky(2, (4,))),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(case):
    _, cls, params, extra, values = case
    pd, pparams = build(px, cls, params, extra)
    td, tparams = build(torch, cls, params, extra)
    assert (tuple(pd.batch_shape), tuple(pd.event_shape)) == \
        (tuple(td.batch_shape), tuple(td.event_shape))
    assert pd.has_rsample == td.has_rsample
    pv, tv = px.tensor(values), torch.tensor(values)
    plp, tlp = pd.log_prob(pv), td.log_prob(tv)
    close(plp, tlp)
    finite = np.isfinite(tlp.detach().numpy())
    loss_p = px.where(px.tensor(finite), plp, 0.0).sum()
    loss_t = torch.where(torch.tensor(finite), tlp, 0.0).sum()
    with np.errstate(all="ignore"):
        for attr in ("mean", "variance", "stddev", "mode"):
            want = torch_has(lambda: getattr(td, attr))
            if want is None:
                with pytest.raises(NotImplementedError):
                    getattr(pd, attr)
                continue
            got = getattr(pd, attr)
            close(got, want)
            # an infinite moment's gradient is nan (phalanx) or 0 (torch): left out
            if attr in ("mean", "variance") and want.requires_grad and \
                    bool(torch.isfinite(want).all()):
                loss_p, loss_t = loss_p + got.sum(), loss_t + want.sum()
        want = torch_has(td.entropy)
        if want is None:
            with pytest.raises(NotImplementedError):
                pd.entropy()
        else:
            got = pd.entropy()
            close(got, want)
            if want.requires_grad:
                loss_p, loss_t = loss_p + got.sum(), loss_t + want.sum()
        if not pd.event_shape:
            want = torch_has(lambda: td.cdf(tv))
            if want is not None:
                got = pd.cdf(pv)
                close(got, want, rtol=1e-9)
                if _differentiable(want, tparams):     # Gamma's cdf is not, in either
                    loss_p, loss_t = loss_p + got.sum(), loss_t + want.sum()
            q = RNG.uniform(0.05, 0.95, values.shape)
            want = torch_has(lambda: td.icdf(torch.tensor(q)))
            if want is not None:
                got = pd.icdf(px.tensor(q))
                close(got, want, rtol=1e-9)
                keep = torch.isfinite(want)
                loss_p = loss_p + px.where(px.tensor(keep.numpy()), got, 0.0).sum()
                loss_t = loss_t + torch.where(keep, want, 0.0).sum()
    loss_p.backward()
    loss_t.backward()
    for name in params:
        if tparams[name].requires_grad:
            got, want = pparams[name].grad, tparams[name].grad
            if name == "scale_tril":
                # only the lower triangle is read; torch's cholesky_solve still gives the
                # upper one a gradient, phalanx's gives it none
                got, want = got.tril(), want.tril()
            close(got, want, rtol=1e-8, atol=1e-10)


def _differentiable(value, params):
    try:
        torch.autograd.grad(value.sum(), [p for p in params.values() if p.requires_grad],
                            retain_graph=True, allow_unused=True)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_expand_and_sample_shapes(case):
    _, cls, params, extra, values = case
    pd, _ = build(px, cls, params, extra)
    td, _ = build(torch, cls, params, extra)
    new_batch = (2,) + tuple(pd.batch_shape)
    wide, twide = pd.expand(new_batch), td.expand(new_batch)
    assert type(wide) is type(pd)
    assert (tuple(wide.batch_shape), tuple(wide.event_shape)) == \
        (tuple(twide.batch_shape), tuple(twide.event_shape))
    value = values[:, None] if values.ndim > len(pd.event_shape) else values
    close(wide.log_prob(px.tensor(value)), twide.log_prob(torch.tensor(value)))
    px.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Wishart's low-df warning
        for dist in (pd, wide):
            draws = dist.sample((3,))
            assert tuple(draws.shape) == (3,) + tuple(dist.batch_shape) + tuple(dist.event_shape)
            assert draws.dtype == px.float64 and not draws.requires_grad
            assert bool(dist.support.check(draws).all())


# ---- KL: every pair torch registers that involves a new family ------------------------------
def _family(name, rng):
    """Standard parameters of a family (batch shape (3,)), drawn from `rng`."""
    u = rng.uniform
    table = {
        "Normal": {"loc": rng.standard_normal(3), "scale": u(0.5, 2, 3)},
        "Laplace": {"loc": rng.standard_normal(3), "scale": u(0.5, 2, 3)},
        "Cauchy": {"loc": rng.standard_normal(3), "scale": u(0.5, 2, 3)},
        "Gumbel": {"loc": rng.standard_normal(3), "scale": u(0.5, 2, 3)},
        "Beta": {"concentration1": u(0.5, 3, 3), "concentration0": u(0.5, 3, 3)},
        "ContinuousBernoulli": {"probs": np.array([0.2, 0.4995, 0.8]) + u(-0.05, 0.05, 3)
                                * np.array([1, 0, 1])},
        "Dirichlet": {"concentration": u(0.5, 3, (3, 4))},
        "Exponential": {"rate": u(0.5, 3, 3)},
        "Gamma": {"concentration": u(0.5, 3, 3), "rate": u(0.5, 3, 3)},
        "Chi2": {"df": u(1, 5, 3)},
        "Geometric": {"probs": u(0.1, 0.9, 3)},
        "HalfNormal": {"scale": u(0.5, 2, 3)},
        "Pareto": {"scale": u(0.5, 2, 3), "alpha": np.array([0.8, 1.5, 3.0])},
        "Poisson": {"rate": u(0.5, 4, 3)},
        "Bernoulli": {"probs": u(0.1, 0.9, 3)},
        "Binomial": {"total_count": np.array([5.0, 7.0, 5.0]), "probs": u(0.1, 0.9, 3)},
        "Uniform": {"low": np.array([0.1, -0.5, 0.2]), "high": np.array([0.9, 0.5, 3.0])},
        "LogNormal": {"loc": rng.standard_normal(3), "scale": u(0.5, 2, 3)},
        "LowRankMultivariateNormal": {"loc": rng.standard_normal((3, 4)),
                                      "cov_factor": rng.standard_normal((4, 2)),
                                      "cov_diag": u(0.5, 2, 4)},
        "MultivariateNormal": {"loc": rng.standard_normal((3, 4)),
                               "covariance_matrix": spd(4, rng=rng)},
        "Wishart": {"df": np.array([4.0, 5.0, 6.5]), "covariance_matrix": spd(3, (3,), rng)},
    }
    return table[name]


KL_PAIRS = [
    # one family with itself
    ("Beta", "Beta"), ("Binomial", "Binomial"), ("ContinuousBernoulli", "ContinuousBernoulli"),
    ("Dirichlet", "Dirichlet"), ("Gamma", "Gamma"), ("Chi2", "Chi2"), ("Gumbel", "Gumbel"),
    ("Geometric", "Geometric"), ("HalfNormal", "HalfNormal"),
    ("LowRankMultivariateNormal", "LowRankMultivariateNormal"),
    ("MultivariateNormal", "LowRankMultivariateNormal"),
    ("LowRankMultivariateNormal", "MultivariateNormal"), ("Pareto", "Pareto"),
    ("Poisson", "Poisson"), ("LogNormal", "LogNormal"), ("Cauchy", "Cauchy"),
    ("Wishart", "Wishart"),
    # different families
    ("Bernoulli", "Poisson"), ("Beta", "ContinuousBernoulli"), ("Beta", "Pareto"),
    ("Beta", "Exponential"), ("Beta", "Gamma"), ("Beta", "Normal"), ("Beta", "Uniform"),
    ("ContinuousBernoulli", "Pareto"), ("ContinuousBernoulli", "Exponential"),
    ("ContinuousBernoulli", "Normal"), ("ContinuousBernoulli", "Uniform"),
    ("Exponential", "Beta"), ("Exponential", "ContinuousBernoulli"), ("Exponential", "Pareto"),
    ("Exponential", "Uniform"), ("Exponential", "Gamma"), ("Exponential", "Gumbel"),
    ("Exponential", "Normal"),
    ("Gamma", "Beta"), ("Gamma", "ContinuousBernoulli"), ("Gamma", "Pareto"),
    ("Gamma", "Uniform"), ("Gamma", "Exponential"), ("Gamma", "Gumbel"), ("Gamma", "Normal"),
    ("Gumbel", "Beta"), ("Gumbel", "ContinuousBernoulli"), ("Gumbel", "Exponential"),
    ("Gumbel", "Gamma"), ("Gumbel", "Pareto"), ("Gumbel", "Uniform"), ("Gumbel", "Normal"),
    ("Laplace", "Beta"), ("Laplace", "ContinuousBernoulli"), ("Laplace", "Exponential"),
    ("Laplace", "Gamma"), ("Laplace", "Pareto"), ("Laplace", "Uniform"), ("Laplace", "Normal"),
    ("Normal", "Beta"), ("Normal", "ContinuousBernoulli"), ("Normal", "Exponential"),
    ("Normal", "Gamma"), ("Normal", "Pareto"), ("Normal", "Uniform"), ("Normal", "Gumbel"),
    ("Normal", "Laplace"),
    ("Pareto", "Beta"), ("Pareto", "ContinuousBernoulli"), ("Pareto", "Uniform"),
    ("Pareto", "Exponential"), ("Pareto", "Gamma"), ("Pareto", "Normal"),
    ("Poisson", "Bernoulli"), ("Poisson", "Binomial"),
    ("Uniform", "Beta"), ("Uniform", "ContinuousBernoulli"), ("Uniform", "Exponential"),
    ("Uniform", "Gamma"), ("Uniform", "Gumbel"), ("Uniform", "Normal"), ("Uniform", "Pareto"),
]


def _torch_kl(p, q):
    """torch's KL; a Wishart pair element by element (torch's batched Bregman KL sums the
    df term over the batch, see kl._kl_expfamily_expfamily)."""
    if isinstance(p, TD.Wishart):
        return torch.stack([TD.kl_divergence(
            TD.Wishart(p.df[i], covariance_matrix=p.covariance_matrix[i]),
            TD.Wishart(q.df[i], covariance_matrix=q.covariance_matrix[i]))
            for i in range(p.batch_shape[0])])
    return TD.kl_divergence(p, q)


@pytest.mark.parametrize("pair", KL_PAIRS, ids=[f"{p}-{q}" for p, q in KL_PAIRS])
def test_kl_matches_torch(pair):
    p_cls, q_cls = pair
    p_params, q_params = _family(p_cls, np.random.default_rng(1)), \
        _family(q_cls, np.random.default_rng(2))
    if p_cls == q_cls == "Binomial":   # q.total_count <= p's: finite where equal
        q_params["total_count"] = np.array([5.0, 5.0, 5.0])
    pp, ppar = build(px, p_cls, p_params)
    pq, qpar = build(px, q_cls, q_params)
    tp, tppar = build(torch, p_cls, p_params)
    tq, tqpar = build(torch, q_cls, q_params)
    tkl = _torch_kl(tp, tq)
    with np.errstate(all="ignore"):
        pkl = D.kl_divergence(pp, pq)
    close(pkl, tkl, rtol=1e-9, atol=1e-9)
    finite = np.isfinite(tkl.detach().numpy())
    if not tkl.requires_grad or not finite.any():
        return
    px.where(px.tensor(finite), pkl, 0.0).sum().backward()
    torch.where(torch.tensor(finite), tkl, 0.0).sum().backward()
    for ours, theirs in ((ppar, tppar), (qpar, tqpar)):
        for name in ours:
            if theirs[name].grad is not None:
                close(ours[name].grad, theirs[name].grad, rtol=1e-8, atol=1e-9)


def test_kl_registry_has_every_pair_torch_has():
    def names(registry):
        return {(p.__name__, q.__name__) for p, q in registry}
    assert names(TD.kl._KL_REGISTRY) <= names(D.kl._KL_REGISTRY)   # other tests add some


def test_public_attributes_match_torch():
    for name in TD.__all__:
        theirs = getattr(TD, name)
        if isinstance(theirs, type):
            ours = getattr(D, name)
            missing = [a for a in dir(theirs) if not a.startswith("_") and not hasattr(ours, a)]
            assert not missing, (name, missing)
    assert set(TD.__all__) <= set(D.__all__)


def test_kl_errors_match_torch():
    b = D.Binomial(px.tensor([2.0]), px.tensor([0.5]))
    with pytest.raises(NotImplementedError, match="q.total_count > p.total_count"):
        D.kl_divergence(b, D.Binomial(px.tensor([3.0]), px.tensor([0.5])))
    with pytest.raises(NotImplementedError, match="different exponential families"):
        D.kl_divergence(D.Dirichlet(px.ones(3)), D.Beta(1.0, 1.0))
    with pytest.raises(ValueError, match="different event shapes"):
        D.kl_divergence(D.LowRankMultivariateNormal(px.zeros(2), px.ones(2, 1), px.ones(2)),
                        D.MultivariateNormal(px.zeros(3), px.eye(3)))
    k1 = D.Kumaraswamy(px.tensor([1.0]), px.tensor([2.0]))
    with pytest.raises(NotImplementedError):    # different transforms: no closed form
        D.kl_divergence(k1, D.Kumaraswamy(px.tensor([1.5]), px.tensor([2.0])))


# ---- ExponentialFamily ---------------------------------------------------------------------
EXP_FAMILY = [("Normal", {}), ("Exponential", {}), ("Gamma", {}), ("Chi2", {}),
              ("Beta", {}), ("Dirichlet", {}), ("Bernoulli", {}),
              ("ContinuousBernoulli", {}), ("Wishart", {})]


@pytest.mark.parametrize("name", [n for n, _ in EXP_FAMILY])
def test_exponential_family_bregman_identities(name):
    """The generic entropy and KL (Bregman divergences of the log-normaliser) agree with
    the closed forms, and with torch."""
    pd, _ = build(px, name, _family(name, np.random.default_rng(3)))
    qd, _ = build(px, name, _family(name, np.random.default_rng(4)))
    td, _ = build(torch, name, _family(name, np.random.default_rng(3)))
    tq, _ = build(torch, name, _family(name, np.random.default_rng(4)))
    assert isinstance(pd, D.ExponentialFamily) and isinstance(td, TD.ExponentialFamily)
    if torch_has(lambda: TD.ExponentialFamily.entropy(td)) is None:   # no carrier measure
        with pytest.raises(NotImplementedError, match="_mean_carrier_measure"):
            D.ExponentialFamily.entropy(pd)
    else:
        close(D.ExponentialFamily.entropy(pd), td.entropy(), rtol=1e-8)
        close(D.ExponentialFamily.entropy(pd), pd.entropy(), rtol=1e-8)
    close(D.kl._kl_expfamily_expfamily(pd, qd), _torch_kl(td, tq), rtol=1e-8, atol=1e-10)


def test_exponential_family_rules_under_no_grad():
    """grad F is taken inside, but nothing recorded leaks out of a no_grad block."""
    loc = px.tensor([0.0, 1.0], dtype=px.float64, requires_grad=True)
    p = D.Normal(loc, px.tensor([1.0, 2.0], dtype=px.float64))
    q = D.Wishart(px.tensor(4.0, dtype=px.float64), px.eye(2, dtype=px.float64))
    r = D.Wishart(px.tensor(5.0, dtype=px.float64), 2 * px.eye(2, dtype=px.float64))
    with px.no_grad():
        entropy, kl = D.ExponentialFamily.entropy(p), D.kl_divergence(q, r)
    assert not entropy.requires_grad and not kl.requires_grad
    close(entropy, p.entropy())
    df = px.tensor(5.0, dtype=px.float64, requires_grad=True)
    assert D.kl_divergence(q, D.Wishart(df, 2 * px.eye(2, dtype=px.float64))).requires_grad


def test_poisson_entropy_is_not_implemented_as_in_torch():
    with pytest.raises(NotImplementedError):
        TD.Poisson(torch.tensor([1.0])).entropy()
    with pytest.raises(NotImplementedError):
        D.Poisson(px.tensor([1.0])).entropy()


# ---- rsample -------------------------------------------------------------------------------
def _seeded(fn):
    def run(*params):
        px.manual_seed(5)
        return fn(*params)
    return run


RSAMPLE = [
    ("gumbel", lambda loc, s: D.Gumbel(loc, s).rsample((4,)),
     [RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)]),
    ("half_normal", lambda s: D.HalfNormal(s).rsample((4,)), [RNG.uniform(0.5, 2, 3)]),
    ("half_cauchy", lambda s: D.HalfCauchy(s).rsample((4,)), [RNG.uniform(0.5, 2, 3)]),
    ("weibull", lambda s, k: D.Weibull(s, k).rsample((4,)),
     [RNG.uniform(0.5, 2, 3), RNG.uniform(0.5, 3, 3)]),
    ("pareto", lambda s, a: D.Pareto(s, a).rsample((4,)),
     [RNG.uniform(0.5, 2, 3), RNG.uniform(1, 3, 3)]),
    ("kumaraswamy", lambda a, b: D.Kumaraswamy(a, b).rsample((4,)),
     [RNG.uniform(0.5, 3, 3), RNG.uniform(0.5, 3, 3)]),
    ("lowrank_mvn", lambda loc, w, d: D.LowRankMultivariateNormal(loc, w, d).rsample((3,)),
     [RNG.standard_normal(3), RNG.standard_normal((3, 2)), RNG.uniform(0.5, 2, 3)]),
    ("continuous_bernoulli", lambda p: D.ContinuousBernoulli(p).rsample((4,)),
     [np.array([0.1, 0.3, 0.8])]),
    ("generalized_pareto", lambda loc, s, c: D.GeneralizedPareto(loc, s, c).rsample((4,)),
     [RNG.standard_normal(3), RNG.uniform(0.5, 2, 3), np.array([0.3, -0.2, 0.5])]),
    ("logistic_normal", lambda loc, s: D.LogisticNormal(loc, s).rsample((3,)),
     [RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)]),
]


@pytest.mark.parametrize("case", RSAMPLE, ids=[c[0] for c in RSAMPLE])
def test_rsample_gradients(case):
    _, fn, arrays = case
    params = [px.tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(_seeded(fn), params)


SAME_NOISE = [   # base draws that carry no parameter: torch's transforms on the same draws
    ("Gumbel", {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)}),
    ("Weibull", {"scale": RNG.uniform(0.5, 2, 3), "concentration": RNG.uniform(0.5, 3, 3)}),
    ("Kumaraswamy", {"concentration1": RNG.uniform(0.5, 3, 3),
                     "concentration0": RNG.uniform(0.5, 3, 3)}),
]


@pytest.mark.parametrize("case", SAME_NOISE, ids=[c[0] for c in SAME_NOISE])
def test_rsample_matches_torch_on_the_same_base_draws(case):
    cls, params = case
    pd, pparams = build(px, cls, params)
    td, tparams = build(torch, cls, params)
    px.manual_seed(2)
    x = pd.rsample((5,))
    px.manual_seed(2)
    base = pd.base_dist.rsample((5,)).numpy()
    y = torch.tensor(base)
    for t in td.transforms:
        y = t(y)
    close(x, y, rtol=1e-9)
    (x ** 2).sum().backward()
    (y ** 2).sum().backward()
    for name in params:
        close(pparams[name].grad, tparams[name].grad, rtol=1e-8)


@pytest.mark.parametrize("name, make, mean", [
    ("inverse_gamma", lambda a, b: D.InverseGamma(a, b), lambda a, b: b / (a - 1)),
    ("fisher_snedecor", lambda d1, d2: D.FisherSnedecor(d1, d2), lambda d1, d2: d2 / (d2 - 2)),
])
def test_gamma_based_rsample_gradients_are_pathwise(name, make, mean):
    """Through the implicit Gamma gradient: the gradient of the sample mean is that of the
    analytic mean, up to Monte Carlo error."""
    arrays = [np.array([6.0, 9.0]), np.array([7.0, 12.0])]
    a = [px.tensor(v, requires_grad=True) for v in arrays]
    px.manual_seed(0)
    make(*a).rsample((40000,)).mean(0).sum().backward()
    b = [torch.tensor(v, requires_grad=True) for v in arrays]
    mean(*b).sum().backward()
    for ours, exact in zip(a, b):
        want = 0.0 if exact.grad is None else exact.grad.numpy()   # a mean free of it
        np.testing.assert_allclose(ours.grad.numpy(), want, rtol=0.08, atol=0.01)


def test_wishart_rsample_gradient_is_pathwise():
    df = px.tensor(6.0, dtype=px.float64, requires_grad=True)
    cov_np = spd(2)
    tril = px.tensor(np.linalg.cholesky(cov_np), requires_grad=True)
    px.manual_seed(0)
    mean = D.Wishart(df, scale_tril=tril).rsample((20000,)).mean(0)
    weights = np.array([[1.0, 0.5], [0.5, 2.0]])
    (mean * px.tensor(weights)).sum().backward()
    tdf = torch.tensor(6.0, requires_grad=True)
    ttril = torch.tensor(np.linalg.cholesky(cov_np), requires_grad=True)
    (tdf * (ttril @ ttril.mT) * torch.tensor(weights)).sum().backward()   # E = df Sigma
    np.testing.assert_allclose(df.grad.numpy(), tdf.grad.numpy(), rtol=0.05)
    np.testing.assert_allclose(np.tril(tril.grad.numpy()), np.tril(ttril.grad.numpy()),
                               rtol=0.05, atol=0.3)


def test_one_hot_straight_through_matches_torch():
    logits = RNG.standard_normal((2, 4))
    w = RNG.standard_normal((3, 2, 4))
    pl, tl = px.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    px.manual_seed(0)
    draw = D.OneHotCategoricalStraightThrough(logits=pl).rsample((3,))
    assert draw.requires_grad and set(np.unique(draw.detach().numpy())) <= {0.0, 1.0}
    (draw * px.tensor(w)).sum().backward()
    tdraw = TD.OneHotCategoricalStraightThrough(logits=tl).rsample((3,))
    (tdraw * torch.tensor(w)).sum().backward()
    close(pl.grad, tl.grad)       # the straight-through gradient does not depend on the draw
    assert not D.OneHotCategorical(logits=pl).has_rsample


# ---- sampling statistics -------------------------------------------------------------------
N = 20000


def _draws(dist, n=N):
    px.manual_seed(0)
    x = dist.sample((n,))
    assert bool(dist.support.check(x).all())
    return x.numpy()


def _cdf_matches(dist, x, probs=(0.1, 0.3, 0.5, 0.7, 0.9), atol=0.015):
    """The cdf at the draws' empirical quantiles."""
    for q in probs:
        point = px.tensor(np.quantile(x, q, axis=0))
        np.testing.assert_allclose(dist.cdf(point).numpy(), q, atol=atol)


@pytest.mark.parametrize("cls, params", [
    ("Gumbel", {"loc": [0.5, -1.0], "scale": [1.0, 2.0]}),
    ("HalfNormal", {"scale": [0.5, 2.0]}),
    ("HalfCauchy", {"scale": [0.5, 2.0]}),
    ("Weibull", {"scale": [1.0, 2.0], "concentration": [0.7, 3.0]}),
    ("Pareto", {"scale": [1.0, 0.5], "alpha": [0.8, 3.0]}),
    ("Kumaraswamy", {"concentration1": [0.5, 3.0], "concentration0": [2.0, 0.7]}),
    ("ContinuousBernoulli", {"probs": [0.2, 0.5]}),
    ("GeneralizedPareto", {"loc": [0.0, 1.0], "scale": [1.0, 2.0],
                           "concentration": [0.0, -0.3]}),
    ("InverseGamma", {"concentration": [3.0, 1.5], "rate": [2.0, 1.0]}),
])
def test_continuous_samples_follow_the_cdf(cls, params):
    dist = getattr(D, cls)(**{k: px.tensor(np.array(v)) for k, v in params.items()})
    x = _draws(dist)
    assert x.shape == (N, 2) and x.dtype == np.float64
    _cdf_matches(dist, x)


@pytest.mark.parametrize("cls, params, extra", [
    ("Geometric", {"probs": [0.2, 0.7]}, {}),
    ("NegativeBinomial", {"total_count": [3.0, 0.5], "probs": [0.4, 0.8]}, {}),
    ("FisherSnedecor", {"df1": [5.0, 10.0], "df2": [12.0, 20.0]}, {}),
    ("VonMises", {"loc": [0.5, -2.5], "concentration": [4.0, 0.3]}, {}),
    ("LowRankMultivariateNormal", {"loc": [1.0, -1.0], "cov_factor": [[1.0], [0.5]],
                                   "cov_diag": [0.5, 1.0]}, {}),
    ("Multinomial", {"probs": [0.2, 0.3, 0.5]}, {"total_count": 7}),
    ("LogisticNormal", {"loc": [0.5, -0.5], "scale": [0.3, 0.5]}, {}),
    ("OneHotCategoricalStraightThrough", {"probs": [0.2, 0.3, 0.5]}, {}),
])
def test_sample_moments(cls, params, extra):
    dist = getattr(D, cls)(**{k: px.tensor(np.array(v)) for k, v in params.items()}, **extra)
    x = _draws(dist)
    if cls == "VonMises":       # circular: E[exp(i x)] = (1 - circular variance) e^(i loc)
        z = np.exp(1j * x).mean(0)
        want = (1 - dist.variance.numpy()) * np.exp(1j * dist.mean.numpy())
        np.testing.assert_allclose([z.real, z.imag], [want.real, want.imag], atol=0.012)
        assert (np.abs(x) <= math.pi).all()
        return
    if cls == "LogisticNormal":   # no closed moments: the logits of the draws are Normal
        logits = np.log(x[:, :-1] / (1 - np.cumsum(x[:, :-1], -1)))
        offset = np.log(np.array([2.0, 1.0]))   # the stick-breaking centring
        np.testing.assert_allclose(logits.mean(0) + offset, params["loc"], atol=0.02)
        np.testing.assert_allclose(logits.std(0), params["scale"], rtol=0.03)
        return
    if cls == "LowRankMultivariateNormal":
        np.testing.assert_allclose(np.cov(x.T), dist.covariance_matrix.numpy(), atol=0.05)
    if cls == "Multinomial":
        assert (x.sum(-1) == 7).all() and (x == np.round(x)).all()
    np.testing.assert_allclose(x.mean(0), dist.mean.numpy(), rtol=0.03, atol=0.02)
    np.testing.assert_allclose(x.var(0), dist.variance.numpy(), rtol=0.06, atol=0.02)


def test_matrix_samples():
    px.manual_seed(0)
    cov = spd(3)
    w = D.Wishart(px.tensor(7.0, dtype=px.float64), covariance_matrix=px.tensor(cov))
    x = w.sample((20000,)).numpy()
    np.testing.assert_allclose(x.mean(0), 7.0 * cov, rtol=0.03, atol=0.1)
    np.testing.assert_allclose(x.var(0), w.variance.numpy(), rtol=0.08)
    lkj = D.LKJCholesky(3, px.tensor([0.5, 1.0, 8.0], dtype=px.float64))
    low = lkj.sample((8000,)).numpy()
    corr = low @ np.swapaxes(low, -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, atol=1e-12)
    # a correlation's marginal under LKJ(eta) in dimension d is Beta(b, b) on (-1, 1),
    # b = eta - 1 + d / 2: its variance is 1 / (2 b + 1)
    b = np.array([0.5, 1.0, 8.0]) - 1 + 3 / 2
    np.testing.assert_allclose(corr[..., 1, 0].var(0), 1 / (2 * b + 1), rtol=0.06)
    np.testing.assert_allclose(corr[..., 2, 1].var(0), 1 / (2 * b + 1), rtol=0.06)


def test_wishart_rsample_redraws_singular_samples(monkeypatch):
    """`max_try_correction` bounds the redraws of singular samples."""
    w = D.Wishart(px.tensor(3.0, dtype=px.float64), covariance_matrix=px.eye(2,
                                                                              dtype=px.float64))
    calls = []

    def singular(sample_shape):
        calls.append(sample_shape)
        return px.zeros(tuple(sample_shape) + (2, 2), dtype=px.float64)
    monkeypatch.setattr(w, "_bartlett_sampling", singular)
    with pytest.warns(UserWarning, match="Singular sample detected"):
        w.rsample((4,), max_try_correction=3)
    assert len(calls) == 4
    calls.clear()
    with pytest.warns(UserWarning, match="Singular sample detected"):
        w.rsample((4,), max_try_correction=0)
    assert len(calls) == 1
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a regular draw: no warning, no redraw
        assert tuple(w.rsample((4,)).shape) == (4, 2, 2)


# ---- details -------------------------------------------------------------------------------
def test_lowrank_matrices_match_torch_and_a_full_mvn():
    loc, w, d = RNG.standard_normal((2, 4)), RNG.standard_normal((4, 2)), RNG.uniform(0.5, 2, 4)
    pd = D.LowRankMultivariateNormal(px.tensor(loc), px.tensor(w), px.tensor(d))
    td = TD.LowRankMultivariateNormal(torch.tensor(loc), torch.tensor(w), torch.tensor(d))
    for attr in ("covariance_matrix", "precision_matrix", "scale_tril", "variance"):
        close(getattr(pd, attr), getattr(td, attr), rtol=1e-9)
    full = D.MultivariateNormal(px.tensor(loc), covariance_matrix=pd.covariance_matrix)
    x = px.tensor(RNG.standard_normal((3, 2, 4)))
    close(pd.log_prob(x), full.log_prob(x), rtol=1e-9)
    close(pd.entropy(), full.entropy(), rtol=1e-9)


def test_enumerate_support_matches_torch():
    pb, tb = D.Binomial(px.tensor([3.0, 3.0]), px.tensor([0.2, 0.6])), \
        TD.Binomial(torch.tensor([3.0, 3.0]), torch.tensor([0.2, 0.6]))
    for expand in (True, False):
        close(pb.enumerate_support(expand), tb.enumerate_support(expand))
    po = D.OneHotCategorical(logits=px.zeros(2, 3))
    to = TD.OneHotCategorical(logits=torch.zeros(2, 3))
    for expand in (True, False):
        close(po.enumerate_support(expand), to.enumerate_support(expand))
    with pytest.raises(NotImplementedError, match="Inhomogeneous total count"):
        D.Binomial(px.tensor([2.0, 3.0]), px.tensor([0.5, 0.5])).enumerate_support()


def test_new_icdfs_of_existing_families():
    q = RNG.uniform(0.05, 0.95, (2, 3))
    for cls, params in (("Uniform", {"low": [-1.0, 0.0, 2.0], "high": [1.0, 0.5, 5.0]}),
                        ("Laplace", {"loc": [0.0, 1.0, -2.0], "scale": [1.0, 0.5, 3.0]})):
        pd = getattr(D, cls)(**{k: px.tensor(v) for k, v in params.items()})
        td = getattr(TD, cls)(**{k: torch.tensor(v) for k, v in params.items()})
        close(pd.icdf(px.tensor(q)), td.icdf(torch.tensor(q)))


# ---- validation ----------------------------------------------------------------------------
def _torch_error(fn):
    try:
        fn(torch, TD)
    except Exception as e:      # noqa: BLE001 - the type is compared below
        return type(e), str(e).replace("torch.Size", "phalanx.Size").split("\n")[0]
    raise AssertionError("torch did not raise")


INVALID = [
    ("gumbel_scale", lambda m, d: d.Gumbel(m.tensor([0.0, 1.0]), m.tensor([1.0, -1.0]))),
    ("half_normal_scale", lambda m, d: d.HalfNormal(m.tensor([1.0, -2.0]))),
    ("half_cauchy_scale", lambda m, d: d.HalfCauchy(m.tensor([1.0, 0.0]))),
    ("weibull_concentration", lambda m, d: d.Weibull(m.tensor([1.0, 2.0]),
                                                     m.tensor([1.0, -2.0]))),
    ("pareto_alpha", lambda m, d: d.Pareto(m.tensor([1.0, 2.0]), m.tensor([-1.0, 2.0]))),
    ("geometric_zero_probs", lambda m, d: d.Geometric(probs=m.tensor([0.5, 0.0]))),
    ("geometric_probs", lambda m, d: d.Geometric(probs=m.tensor([0.5, 1.5]))),
    ("geometric_both", lambda m, d: d.Geometric(probs=m.tensor([0.5]), logits=m.tensor([0.0]))),
    ("negative_binomial_probs", lambda m, d: d.NegativeBinomial(m.tensor([1.0, 2.0]),
                                                                probs=m.tensor([0.5, 1.0]))),
    ("negative_binomial_count", lambda m, d: d.NegativeBinomial(m.tensor([-1.0, 2.0]),
                                                                probs=m.tensor([0.5, 0.5]))),
    ("multinomial_count", lambda m, d: d.Multinomial(2.5, probs=m.tensor([0.5, 0.5]))),
    ("multinomial_probs", lambda m, d: d.Multinomial(2, probs=m.tensor([0.5, -0.5]))),
    ("lowrank_factor_shape", lambda m, d: d.LowRankMultivariateNormal(
        m.zeros(3), m.zeros(2, 1), m.ones(3))),
    ("lowrank_diag_shape", lambda m, d: d.LowRankMultivariateNormal(
        m.zeros(3), m.zeros(3, 1), m.ones(2))),
    ("lowrank_0d_loc", lambda m, d: d.LowRankMultivariateNormal(
        m.tensor(0.0), m.zeros(3, 1), m.ones(3))),
    ("lowrank_diag", lambda m, d: d.LowRankMultivariateNormal(
        m.zeros(2), m.zeros(2, 1), m.tensor([1.0, -1.0]))),
    ("von_mises_concentration", lambda m, d: d.VonMises(m.tensor([0.0, 1.0]),
                                                        m.tensor([1.0, -1.0]))),
    ("kumaraswamy", lambda m, d: d.Kumaraswamy(m.tensor([1.0, -1.0]), m.tensor([1.0, 1.0]))),
    ("fisher_snedecor", lambda m, d: d.FisherSnedecor(m.tensor([1.0, 2.0]),
                                                      m.tensor([0.0, 1.0]))),
    ("continuous_bernoulli", lambda m, d: d.ContinuousBernoulli(
        probs=m.tensor([0.5, 1.5]), validate_args=True)),
    ("inverse_gamma", lambda m, d: d.InverseGamma(m.tensor([1.0, 2.0]), m.tensor([1.0, -2.0]))),
    ("generalized_pareto", lambda m, d: d.GeneralizedPareto(
        m.tensor([0.0, 1.0]), m.tensor([1.0, -1.0]), m.tensor([0.1, 0.2]))),
    ("logistic_normal", lambda m, d: d.LogisticNormal(m.tensor([0.0, 1.0]),
                                                      m.tensor([1.0, -1.0]))),
    ("wishart_df", lambda m, d: d.Wishart(m.tensor([1.0, 3.0]), covariance_matrix=m.eye(3))),
    ("wishart_two_matrices", lambda m, d: d.Wishart(
        m.tensor([4.0, 3.0]), covariance_matrix=m.eye(3), scale_tril=m.eye(3))),
    ("wishart_not_pd", lambda m, d: d.Wishart(
        m.tensor([3.0, 3.0]), covariance_matrix=m.tensor([[1.0, 2.0], [2.0, 1.0]]))),
    ("lkj_dim", lambda m, d: d.LKJCholesky(1)),
    ("lkj_concentration", lambda m, d: d.LKJCholesky(3, m.tensor([1.0, -1.0]))),
    ("half_normal_value", lambda m, d: d.HalfNormal(m.tensor([1.0, 2.0])).log_prob(
        m.tensor([-1.0, 1.0]))),
    ("pareto_value", lambda m, d: d.Pareto(m.tensor([1.0, 2.0]), m.tensor([1.0, 2.0])).log_prob(
        m.tensor([1.5, 1.5]))),
    ("geometric_value", lambda m, d: d.Geometric(m.tensor([0.5, 0.5])).log_prob(
        m.tensor([0.5, 1.0]))),
    ("multinomial_value", lambda m, d: d.Multinomial(2, probs=m.tensor([0.5, 0.5])).log_prob(
        m.tensor([2.0, 1.0]))),
    ("lkj_value", lambda m, d: d.LKJCholesky(2).log_prob(m.tensor([[1.0, 0.0], [0.5, 0.5]]))),
    ("logistic_normal_value", lambda m, d: d.LogisticNormal(
        m.zeros(2), m.ones(2)).log_prob(m.tensor([0.5, 0.6, 0.1]))),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_validation_errors_match_torch(case):
    _, fn = case
    kind, message = _torch_error(fn)
    with pytest.raises(kind) as info:
        fn(px, D)
    assert str(info.value).split("\n")[0] == message


def test_validation_can_be_switched_off_for_new_families():
    with np.errstate(all="ignore"):
        d = D.HalfNormal(px.tensor([-1.0]), validate_args=False)
        assert np.isnan(d.log_prob(px.tensor([1.0])).item())
        D.Geometric(probs=px.tensor([0.0]), validate_args=False)
        pareto = D.Pareto(px.tensor([1.0]), px.tensor([2.0]), validate_args=False)
        tpareto = TD.Pareto(torch.tensor([1.0]), torch.tensor([2.0]), validate_args=False)
        close(pareto.log_prob(px.tensor([0.5])), tpareto.log_prob(torch.tensor([0.5])).float(),
              rtol=1e-6)
    with pytest.raises(ValueError):
        D.Pareto(px.tensor([1.0]), px.tensor([2.0])).log_prob(px.tensor([0.5]))
