"""Cauchy, LogNormal, TransformedDistribution with Exp/Affine/Sigmoid/Tanh/Compose
transforms, and Normal.icdf against torch.distributions: log_prob, cdf, icdf, entropy,
moments, gradients through log_prob and rsample."""
import math

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.distributions as PD
import torch.distributions as TD


def _param(lib, v):
    return lib.tensor(v, dtype=lib.float64, requires_grad=True)


CASES = {
    "normal": (lambda D, p: D.Normal(p(0.5), p(1.5)), [0.3, 1.2, -2.5]),
    "cauchy": (lambda D, p: D.Cauchy(p(0.5), p(1.5)), [0.3, 1.2, -2.5]),
    "lognormal": (lambda D, p: D.LogNormal(p(0.2), p(0.7)), [0.3, 1.2, 2.5]),
    "tanh": (lambda D, p: D.TransformedDistribution(D.Normal(p(0.1), p(0.9)),
                                                    [D.transforms.TanhTransform()]),
             [-0.7, 0.1, 0.9]),
    "sigmoid_affine": (lambda D, p: D.TransformedDistribution(
        D.Normal(p(0.1), p(0.9)), [D.transforms.SigmoidTransform(),
                                   D.transforms.AffineTransform(1.0, 2.0)]), [1.2, 2.0, 2.9]),
    "exp": (lambda D, p: D.TransformedDistribution(D.Normal(p(0.1), p(0.9)),
                                                   D.transforms.ExpTransform()), [0.5, 2.0]),
    "compose": (lambda D, p: D.TransformedDistribution(D.Normal(p(0.1), p(0.9)), [
        D.transforms.ComposeTransform([D.transforms.AffineTransform(0.5, 3.0),
                                       D.transforms.ExpTransform()])]), [0.5, 2.0]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(name):
    make, values = CASES[name]
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        params = []

        def p(v, lib=lib):
            t = _param(lib, v)
            params.append(t)
            return t
        dist = make(D, p)
        value = lib.tensor(values, dtype=lib.float64)
        out = {"log_prob": dist.log_prob(value), "cdf": dist.cdf(value),
               "icdf": dist.icdf(lib.tensor([0.2, 0.7], dtype=lib.float64))}
        if name in ("normal", "cauchy", "lognormal"):
            out["entropy"] = dist.entropy()
        if name in ("normal", "lognormal"):
            out["mean"], out["variance"] = dist.mean, dist.variance
        out["log_prob"].sum().backward()
        out["grads"] = [t.grad for t in params]
        results.append(out)
    ours, theirs = results
    for key in theirs:
        if key == "grads":
            for g, h in zip(ours[key], theirs[key]):
                np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-10, atol=1e-12)
        else:
            np.testing.assert_allclose(ours[key].detach().numpy(),
                                       theirs[key].detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}.{key}")


def test_sampling_moments_and_rsample_gradients():
    px.manual_seed(0)
    loc, scale = px.tensor(0.3, requires_grad=True), px.tensor(0.5, requires_grad=True)
    d = PD.LogNormal(loc, scale)
    x = d.rsample((20000,))
    assert x.min().item() > 0 and abs(x.log().mean().item() - 0.3) < 0.02
    x.mean().backward()
    assert abs(loc.grad.item() - math.exp(0.3 + 0.125)) < 0.05
    c = PD.Cauchy(px.tensor(1.0), px.tensor(2.0)).sample((20000,)).numpy()
    assert abs(np.median(c) - 1.0) < 0.1
    squashed = PD.TransformedDistribution(PD.Normal(px.zeros(3), px.ones(3)),
                                          [PD.transforms.TanhTransform(cache_size=1)])
    a = squashed.rsample()
    assert (a.abs() < 1).all() and np.isfinite(squashed.log_prob(a).numpy()).all()
    assert squashed.has_rsample and np.isnan(PD.Cauchy(0.0, 1.0).mean.item())


@pytest.mark.filterwarnings("ignore:divide by zero encountered in arctanh:RuntimeWarning")
def test_tanh_cache_returns_the_pre_image():
    t = PD.transforms.TanhTransform(cache_size=1)
    x = px.tensor([20.0])
    y = t(x)
    assert t.inv(y) is x                      # atanh(1.0) would be inf; the cache keeps x
    assert not PD.transforms.TanhTransform().inv(y).isfinite().all()
    with pytest.raises(ValueError, match="cache_size"):
        PD.transforms.TanhTransform(cache_size=2)


def test_poisson_distribution_and_draws():
    values = np.array([0.0, 2.0, 7.0])
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        rate = lib.tensor([0.5, 3.0, 10.0], dtype=lib.float64, requires_grad=True)
        d = D.Poisson(rate)
        lp = d.log_prob(lib.tensor(values, dtype=lib.float64))
        lp.sum().backward()
        results.append((lp.detach().numpy(), rate.grad.numpy(), d.mode.detach().numpy(),
                        d.variance.detach().numpy()))
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    px.manual_seed(1)
    draws = PD.Poisson(px.tensor([0.5, 3.0, 10.0])).sample((20000,)).numpy()
    assert (draws == np.round(draws)).all() and draws.min() >= 0
    np.testing.assert_allclose(draws.mean(0), [0.5, 3.0, 10.0], rtol=0.03)
    np.testing.assert_allclose(draws.var(0), [0.5, 3.0, 10.0], rtol=0.06)
    counts = px.binomial(px.tensor([10.0, 20.0]).expand(20000, 2), px.tensor([0.3, 0.5]))
    np.testing.assert_allclose(counts.numpy().mean(0), [3.0, 10.0], rtol=0.03)
    px.manual_seed(5)
    first = px.poisson(px.full((4,), 2.0)).numpy()
    px.manual_seed(5)
    np.testing.assert_array_equal(first, px.poisson(px.full((4,), 2.0)).numpy())
    with pytest.raises(RuntimeError, match="non-negative"):
        px.poisson(px.tensor([-1.0]))


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_binomial_matches_torch(kind):
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        param = lib.tensor([0.3, 0.5, 0.9] if kind == "probs" else [-1.0, 0.0, 2.0],
                           dtype=lib.float64, requires_grad=True)
        d = D.Binomial(lib.tensor([5.0, 10.0, 10.0], dtype=lib.float64), **{kind: param})
        lp = d.log_prob(lib.tensor([2.0, 10.0, 0.0], dtype=lib.float64))
        lp.sum().backward()
        results.append([lp.detach().numpy(), param.grad.numpy(), d.mean.detach().numpy(),
                        d.variance.detach().numpy(), d.mode.detach().numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    px.manual_seed(2)
    draws = PD.Binomial(px.tensor(10.0), probs=px.tensor([0.2, 0.7])).sample((20000,))
    np.testing.assert_allclose(draws.numpy().mean(0), [2.0, 7.0], rtol=0.03)


@pytest.mark.parametrize("event", [False, True])
def test_mixture_same_family_matches_torch(event):
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        logits = lib.tensor([[0.1, -0.5, 1.0], [0.3, 0.3, 0.0]], dtype=lib.float64,
                            requires_grad=True)
        loc = lib.tensor(np.arange(12.0).reshape(2, 3, 2) / 4 if event else
                         np.arange(6.0).reshape(2, 3) / 3, dtype=lib.float64,
                         requires_grad=True)
        comp = D.Normal(loc, lib.ones_like(loc) * 0.7)
        comp = D.Independent(comp, 1) if event else comp
        mix = D.MixtureSameFamily(D.Categorical(logits=logits), comp)
        x = lib.tensor(np.array([[0.2, 0.4], [1.0, -1.0]]) if event else np.array([0.2, 1.5]),
                       dtype=lib.float64)
        lp = mix.log_prob(x)
        lp.sum().backward()
        out = [lp.detach().numpy(), logits.grad.numpy(), loc.grad.numpy(),
               mix.mean.detach().numpy(), mix.variance.detach().numpy()]
        if not event:
            out.append(mix.cdf(x).detach().numpy())
        results.append(out)
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_mixture_sampling_picks_components():
    px.manual_seed(0)
    mix = PD.MixtureSameFamily(PD.Categorical(probs=px.tensor([0.3, 0.7])),
                               PD.Normal(px.tensor([-5.0, 5.0]), px.tensor([0.1, 0.1])))
    s = mix.sample((10000,)).numpy()
    assert s.shape == (10000,) and abs((s > 0).mean() - 0.7) < 0.02
    assert ((np.abs(s) > 4) & (np.abs(s) < 6)).all()
    multi = PD.MixtureSameFamily(PD.Categorical(probs=px.tensor([0.3, 0.7])),
                                 PD.Independent(PD.Normal(px.zeros(2, 2), px.ones(2, 2)), 1))
    assert multi.sample((4,)).shape == (4, 2) and multi.event_shape == (2,)
    with pytest.raises(ValueError, match="does not equal"):
        PD.MixtureSameFamily(PD.Categorical(probs=px.ones(3)), PD.Normal(px.zeros(2),
                                                                         px.ones(2)))


GAMMA_FAMILY = {
    "gamma": (lambda D, p: D.Gamma(p([0.5, 2.0, 5.0]), p([1.0, 0.5, 3.0])), [0.3, 2.0, 1.5]),
    "beta": (lambda D, p: D.Beta(p([0.5, 2.0, 5.0]), p([1.5, 0.7, 3.0])), [0.3, 0.9, 0.5]),
    "dirichlet": (lambda D, p: D.Dirichlet(p([[0.5, 2.0, 5.0], [2.0, 1.5, 3.0]])),
                  [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]),
}


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(GAMMA_FAMILY))
def test_gamma_family_matches_torch(name):
    make, values = GAMMA_FAMILY[name]
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        params = []

        def p(v, lib=lib):
            t = lib.tensor(v, dtype=lib.float64, requires_grad=True)
            params.append(t)
            return t
        d = make(D, p)
        x = lib.tensor(values, dtype=lib.float64)
        lp = d.log_prob(x)
        lp.sum().backward()
        out = [lp, d.entropy(), d.mean, d.variance, d.mode] + [q.grad for q in params]
        if name == "gamma":
            out.append(d.cdf(x))
        results.append([o.detach().numpy() for o in out])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_gamma_rsample_gradient_is_the_implicit_one():
    px.manual_seed(0)
    a = px.tensor([0.5, 1.0, 2.0, 8.0], dtype=px.float64, requires_grad=True)
    x = PD.Gamma(a, px.ones(4, dtype=px.float64)).rsample()
    x.sum().backward()
    reference = torch._standard_gamma_grad(torch.tensor(a.detach().numpy()),
                                           torch.tensor(x.detach().numpy()))
    np.testing.assert_allclose(a.grad.numpy(), reference.numpy(), rtol=1e-3)


def test_gamma_family_sampling():
    px.manual_seed(3)
    g = PD.Gamma(px.tensor([2.0]), px.tensor([4.0])).sample((20000,)).numpy()
    assert abs(g.mean() - 0.5) < 0.01 and abs(g.var() - 0.125) < 0.01
    conc = px.tensor(2.0, requires_grad=True)
    b = PD.Beta(conc, px.tensor(3.0)).rsample((20000,))
    assert abs(b.mean().item() - 0.4) < 0.01 and ((b > 0) & (b < 1)).all()
    b.mean().backward()
    assert conc.grad.item() > 0         # a larger first concentration moves draws up
    d = PD.Dirichlet(px.tensor([1.0, 2.0, 3.0])).sample((100,))
    np.testing.assert_allclose(d.sum(-1).numpy(), np.ones(100), rtol=1e-6)
    corner = PD.Dirichlet(px.tensor([0.5, 0.2, 0.9]))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(corner.mode.numpy(),
                                      TD.Dirichlet(torch.tensor([0.5, 0.2, 0.9])).mode.numpy())


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_student_t_and_chi2_match_torch():
    results = []
    for D, lib in ((PD, px), (TD, torch)):
        df = lib.tensor([0.8, 1.5, 3.0, 10.0], dtype=lib.float64, requires_grad=True)
        loc = lib.tensor(0.5, dtype=lib.float64, requires_grad=True)
        scale = lib.tensor(2.0, dtype=lib.float64, requires_grad=True)
        d = D.StudentT(df, loc, scale)
        lp = d.log_prob(lib.tensor([0.3, -2.0, 5.0, 1.0], dtype=lib.float64))
        lp.sum().backward()
        chi2 = D.Chi2(df)
        chi2_lp = chi2.log_prob(lib.tensor([0.3, 2.0, 5.0, 1.0], dtype=lib.float64))
        results.append([o.detach().numpy() for o in (lp, d.entropy(), d.mean, d.variance,
                                                     df.grad, loc.grad, scale.grad, chi2_lp,
                                                     chi2.mean, chi2.df)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, equal_nan=True)
    px.manual_seed(0)
    draws = PD.StudentT(px.tensor(5.0)).rsample((40000,)).numpy()
    assert abs(draws.var() - 5 / 3) < 0.1 and abs(np.median(draws)) < 0.03


def test_relaxed_distributions_match_torch():
    from phalanx.distributions.relaxed import ExpRelaxedCategorical as PExp
    from torch.distributions.relaxed_categorical import ExpRelaxedCategorical as TExp
    results = []
    for D, lib, Exp in ((PD, px, PExp), (TD, torch, TExp)):
        logits = lib.tensor([[0.2, -1.0, 0.5], [1.0, 1.0, -2.0]], dtype=lib.float64,
                            requires_grad=True)
        temperature = lib.tensor(0.7, dtype=lib.float64, requires_grad=True)
        value = lib.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=lib.float64)
        lp = D.RelaxedOneHotCategorical(temperature, logits=logits).log_prob(value)
        lb = D.RelaxedBernoulli(temperature, probs=lib.tensor([0.3, 0.8], dtype=lib.float64)) \
            .log_prob(lib.tensor([0.4, 0.9], dtype=lib.float64))
        le = Exp(temperature, logits=logits).log_prob(value.log())
        (lp.sum() + lb.sum()).backward()
        results.append([x.detach().numpy() for x in (lp, lb, le, logits.grad,
                                                     temperature.grad)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    px.manual_seed(0)
    probs = px.tensor([0.2, 0.8], requires_grad=True)
    s = PD.RelaxedOneHotCategorical(px.tensor(0.5), probs=probs).rsample((5000,))
    np.testing.assert_allclose(s.sum(-1).detach().numpy(), np.ones(5000), rtol=1e-5)
    assert abs(s.mean(0)[1].item() - 0.77) < 0.03
    s[:, 1].mean().backward()
    assert probs.grad is not None and np.isfinite(probs.grad.numpy()).all()
    b = PD.RelaxedBernoulli(px.tensor(0.5), probs=px.tensor([0.2, 0.8])).rsample((5000,))
    assert ((b >= 0) & (b <= 1)).all() and abs(b.mean(0)[1].item() - 0.77) < 0.03


def test_scalar_parameters_sample_to_scalars():
    for dist in (PD.StudentT(3.0), PD.Gamma(2.0, 1.0), PD.Beta(2.0, 2.0), PD.Cauchy(0.0, 1.0),
                 PD.LogNormal(0.0, 1.0), PD.Poisson(3.0), PD.Chi2(2.0)):
        assert dist.sample().shape == () and dist.sample((3,)).shape == (3,)
