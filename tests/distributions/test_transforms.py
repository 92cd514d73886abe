"""phalanx.distributions transforms, biject_to / transform_to, the new constraints and
TransformedDistribution against torch.distributions on the same inputs: forward, inverse,
log|det J|, shapes, event dimensions and gradients; the (x, y) cache; the tanh-squashed
Normal of SAC."""
import numpy as np
import pytest
import torch
import torch.distributions as TD

import phalanx as px
import phalanx.distributions as D
from phalanx.distributions import constraints as C

RNG = np.random.default_rng(7)


def close(p, t, rtol=1e-10, atol=1e-12):
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    np.testing.assert_allclose(p.detach().numpy(), t, rtol=rtol, atol=atol)


def corr_cholesky(n, batch=()):
    m = RNG.standard_normal(batch + (n, n))
    c = m @ np.swapaxes(m, -1, -2) + n * np.eye(n)
    d = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
    return np.linalg.cholesky(c / d[..., :, None] / d[..., None, :])


def spd(n, batch=()):
    m = RNG.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


# (id, factory(module, distributions) -> (transform, {name: parameter}), x in the domain)
def _params(m, **arrays):
    return {k: m.tensor(v, requires_grad=True) for k, v in arrays.items()}


def _with(make, **arrays):
    def factory(m, d):
        params = _params(m, **arrays)
        return make(d, **params), params
    return factory


def _plain(make):
    return lambda m, d: (make(d), {})


TRANSFORMS = [
    ("exp", _plain(lambda d: d.ExpTransform()), RNG.standard_normal((3, 2))),
    ("exp_inv", _plain(lambda d: d.ExpTransform().inv), RNG.uniform(0.1, 3, (4,))),
    ("power", _with(lambda d, e: d.PowerTransform(e), e=RNG.uniform(-2, 2, 3)),
     RNG.uniform(0.2, 3, (2, 3))),
    ("affine_numbers", _plain(lambda d: d.AffineTransform(1.5, -2.0)),
     RNG.standard_normal((2, 3))),
    ("affine_tensors", _with(lambda d, loc, scale: d.AffineTransform(loc, scale),
                             loc=RNG.standard_normal(3), scale=RNG.uniform(-2, 2, 3)),
     RNG.standard_normal((2, 3))),
    ("affine_event_dim", _with(lambda d, loc, scale: d.AffineTransform(loc, scale,
                                                                       event_dim=1),
                               loc=RNG.standard_normal(3), scale=RNG.uniform(0.5, 2, 3)),
     RNG.standard_normal((2, 3))),
    ("sigmoid", _plain(lambda d: d.SigmoidTransform()), RNG.standard_normal((5,)) * 4),
    ("softplus", _plain(lambda d: d.SoftplusTransform()), RNG.standard_normal((5,)) * 4),
    ("tanh", _plain(lambda d: d.TanhTransform()), RNG.standard_normal((2, 3)) * 2),
    ("abs", _plain(lambda d: d.AbsTransform()), RNG.standard_normal((4,))),
    ("softmax", _plain(lambda d: d.SoftmaxTransform()), RNG.standard_normal((2, 4))),
    ("stick_breaking", _plain(lambda d: d.StickBreakingTransform()),
     RNG.standard_normal((2, 3))),
    ("lower_cholesky", _plain(lambda d: d.LowerCholeskyTransform()),
     RNG.standard_normal((2, 3, 3))),
    ("positive_definite", _plain(lambda d: d.PositiveDefiniteTransform()),
     RNG.standard_normal((2, 3, 3))),
    ("corr_cholesky", _plain(lambda d: d.CorrCholeskyTransform()),
     RNG.standard_normal((2, 6))),
    ("corr_cholesky_2x2", _plain(lambda d: d.CorrCholeskyTransform()),
     RNG.standard_normal((3, 1))),
    ("compose", _with(lambda d, s: d.ComposeTransform(
        [d.AffineTransform(0.5, s), d.TanhTransform(), d.AffineTransform(1.0, 3.0)]),
        s=RNG.uniform(0.5, 2, 3)), RNG.standard_normal((2, 3))),
    ("compose_event", _plain(lambda d: d.ComposeTransform(
        [d.ExpTransform(), d.AffineTransform(0.0, 2.0), d.StickBreakingTransform().inv.inv])),
     RNG.standard_normal((2, 3))),
    ("identity", _plain(lambda d: d.identity_transform), RNG.standard_normal((2, 3))),
    ("independent", _plain(lambda d: d.IndependentTransform(d.SigmoidTransform(), 1)),
     RNG.standard_normal((2, 3))),
    ("reshape", _plain(lambda d: d.ReshapeTransform((2, 3), (6,))),
     RNG.standard_normal((4, 2, 3))),
    ("cat", _plain(lambda d: d.CatTransform(
        [d.ExpTransform(), d.identity_transform, d.SigmoidTransform()], dim=-1,
        lengths=[1, 2, 2])), RNG.standard_normal((3, 5))),
    ("cat_batch_dim", _plain(lambda d: d.CatTransform(
        [d.ExpTransform(), d.TanhTransform()], dim=0, lengths=[2, 1])),
     RNG.standard_normal((3, 4))),
    ("stack", _plain(lambda d: d.StackTransform(
        [d.ExpTransform(), d.SoftplusTransform(), d.TanhTransform()], dim=1)),
     RNG.standard_normal((2, 3))),
    ("cumulative_distribution", lambda m, d: (d.CumulativeDistributionTransform(
        d.Normal(m.tensor(0.5, dtype=m.float64), m.tensor(2.0, dtype=m.float64))), {}),
     RNG.standard_normal((4,))),
]


@pytest.mark.parametrize("case", TRANSFORMS, ids=[c[0] for c in TRANSFORMS])
def test_transform_matches_torch(case):
    _, factory, x = case
    pt, pparams = factory(px, D)
    tt, tparams = factory(torch, TD)
    px_x, t_x = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    py, ty = pt(px_x), tt(t_x)
    close(py, ty)
    assert (pt.domain.event_dim, pt.codomain.event_dim, pt.bijective) == \
        (tt.domain.event_dim, tt.codomain.event_dim, tt.bijective)
    assert tuple(pt.forward_shape(px.Size(x.shape))) == tuple(tt.forward_shape(x.shape))
    assert tuple(pt.inverse_shape(py.shape)) == tuple(tt.inverse_shape(ty.shape))
    # the inverse of a fresh copy of y (no cache to hit)
    close(pt.inv(px.tensor(ty.detach().numpy())), tt.inv(torch.tensor(ty.detach().numpy())),
          rtol=1e-9, atol=1e-10)
    try:
        tl = tt.log_abs_det_jacobian(t_x, ty)
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            pt.log_abs_det_jacobian(px_x, py)
        tl = None
    loss_p, loss_t = py.sum(), ty.sum()
    if tl is not None:
        pl = pt.log_abs_det_jacobian(px_x, py)
        close(pl, tl, rtol=1e-9)
        loss_p, loss_t = loss_p + pl.sum(), loss_t + tl.sum()
    loss_p.backward()
    loss_t.backward()
    close(px_x.grad, t_x.grad, rtol=1e-8, atol=1e-10)
    for name in pparams:
        close(pparams[name].grad, tparams[name].grad, rtol=1e-8, atol=1e-10)
    try:
        tsign = tt.sign
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            pt.sign
    else:
        close(px.as_tensor(pt.sign, dtype=px.float64), torch.as_tensor(tsign).double())


def test_inverse_and_equality_structure():
    t = D.ExpTransform()
    assert t.inv.inv is t and t.inv == D.ExpTransform().inv and t == D.ExpTransform()
    assert D.AffineTransform(1.0, 2.0) == D.AffineTransform(1.0, 2.0)
    assert D.AffineTransform(1.0, 2.0) != D.AffineTransform(1.0, 3.0)
    assert D.PowerTransform(px.tensor([2.0])) == D.PowerTransform(px.tensor([2.0]))
    assert D.ComposeTransform([D.ExpTransform()]) == D.ComposeTransform([D.ExpTransform()])
    assert D.ComposeTransform([D.ExpTransform()]) != D.ComposeTransform([D.TanhTransform()])
    compose = D.ComposeTransform([D.ExpTransform(), D.AffineTransform(1.0, 2.0)])
    assert compose.inv.inv is compose and compose.inv.parts[0] == D.AffineTransform(
        1.0, 2.0).inv
    assert D.transforms.TanhTransform is D.TanhTransform
    assert set(D.transforms.__all__) == set(TD.transforms.__all__)
    with pytest.raises(ValueError, match="cache_size must be 0 or 1"):
        D.ExpTransform(cache_size=2)
    with pytest.raises(ValueError, match="different numbers of elements"):
        D.ReshapeTransform((2, 3), (5,))
    with pytest.raises(ValueError, match="Shape mismatch"):
        D.ReshapeTransform((2, 3), (6,)).forward_shape((4, 3, 2))


@pytest.mark.parametrize("make", [
    lambda: D.ExpTransform(), lambda: D.AffineTransform(1.0, 2.0),
    lambda: D.PowerTransform(px.tensor(2.0)), lambda: D.IndependentTransform(
        D.TanhTransform(), 1), lambda: D.ReshapeTransform((2,), (2, 1)),
    lambda: D.ComposeTransform([D.TanhTransform(), D.ExpTransform()]),
    lambda: D.CatTransform([D.ExpTransform()], 0, [2]),
    lambda: D.StackTransform([D.ExpTransform(), D.TanhTransform()], -1),
    lambda: D.CumulativeDistributionTransform(D.Normal(0.0, 1.0)),
    lambda: D.TanhTransform().inv])
def test_with_cache(make):
    t = make()
    cached = t.with_cache(1)
    assert cached._cache_size == 1 and cached.with_cache(1) is cached
    assert type(cached) is type(t) and t.with_cache(0) is t
    x = px.tensor(RNG.uniform(0.1, 0.9, (2,)))
    if isinstance(t, D.ReshapeTransform):
        x = x.reshape(1, 2)
    y = cached(x)
    assert cached(x) is y and cached.inv(y) is x


def test_tanh_cache_makes_the_inverse_exact():
    x = px.tensor([0.3, 25.0, -40.0], dtype=px.float64)   # tanh rounds to +-1 at the ends
    cached, plain = D.TanhTransform(cache_size=1), D.TanhTransform()
    y = cached(x)
    assert cached.inv(y) is x
    with np.errstate(divide="ignore"):
        assert not np.isfinite(plain.inv(plain(x)).numpy()[1:]).any()
    # a value the transform did not produce is inverted, not looked up
    other = px.tensor([0.5], dtype=px.float64)
    np.testing.assert_allclose(cached.inv(other).numpy(), np.arctanh(0.5), rtol=1e-12)


def test_sac_tanh_squashed_normal_matches_torch():
    """SAC's policy: a = tanh(u), u ~ Normal(mu, std); log pi(a) and its gradients, with
    torch fed the same noise."""
    mu_np, log_std_np = RNG.standard_normal((4, 2)), RNG.standard_normal((4, 2)) * 0.5
    mu = px.tensor(mu_np, requires_grad=True)
    log_std = px.tensor(log_std_np, requires_grad=True)
    px.manual_seed(3)
    dist = D.TransformedDistribution(D.Normal(mu, log_std.exp()),
                                     [D.TanhTransform(cache_size=1)])
    assert dist.has_rsample and isinstance(dist.support, type(C.interval(-1.0, 1.0)))
    action = dist.rsample()
    log_pi = dist.log_prob(action).sum(-1)
    (log_pi.sum() + (action ** 2).sum()).backward()
    u = dist.transforms[0].inv(action)          # the cached pre-image
    eps = (u.detach().numpy() - mu_np) / np.exp(log_std_np)

    tmu = torch.tensor(mu_np, requires_grad=True)
    tlog_std = torch.tensor(log_std_np, requires_grad=True)
    tdist = TD.TransformedDistribution(TD.Normal(tmu, tlog_std.exp()),
                                       [TD.TanhTransform(cache_size=1)])
    tu = tmu + tlog_std.exp() * torch.tensor(eps)
    taction = tdist.transforms[0](tu)
    tlog_pi = tdist.log_prob(taction).sum(-1)
    (tlog_pi.sum() + (taction ** 2).sum()).backward()
    close(action, taction)
    close(log_pi, tlog_pi, rtol=1e-9)
    close(mu.grad, tmu.grad, rtol=1e-8)
    close(log_std.grad, tlog_std.grad, rtol=1e-8)
    # saturated actions stay finite through the cache
    big = D.TransformedDistribution(D.Normal(px.tensor([30.0], dtype=px.float64),
                                             px.tensor([0.1], dtype=px.float64)),
                                    [D.TanhTransform(cache_size=1)])
    a = big.rsample()
    assert float(a) == 1.0 and np.isfinite(big.log_prob(a).item())


# ---- biject_to / transform_to -------------------------------------------------------------
REGISTRY = [
    ("real", lambda c: c.real, (3,)),
    ("real_vector", lambda c: c.real_vector, (2, 3)),
    ("positive", lambda c: c.positive, (3,)),
    ("nonnegative", lambda c: c.nonnegative, (3,)),
    ("greater_than", lambda c: c.greater_than(2.0), (3,)),
    ("greater_than_eq", lambda c: c.greater_than_eq(-1.0), (3,)),
    ("less_than", lambda c: c.less_than(3.0), (3,)),
    ("interval", lambda c: c.interval(-2.0, 5.0), (3,)),
    ("half_open_interval", lambda c: c.half_open_interval(-1.0, 1.0), (3,)),
    ("unit_interval", lambda c: c.unit_interval, (3,)),
    ("simplex", lambda c: c.simplex, (2, 3)),
    ("lower_cholesky", lambda c: c.lower_cholesky, (2, 3, 3)),
    ("positive_definite", lambda c: c.positive_definite, (3, 3)),
    ("positive_semidefinite", lambda c: c.positive_semidefinite, (3, 3)),
    ("corr_cholesky", lambda c: c.corr_cholesky, (2, 3)),
    ("independent_positive", lambda c: c.independent(c.positive, 1), (2, 3)),
    ("cat", lambda c: c.cat([c.positive, c.real, c.unit_interval], -1, [1, 2, 1]), (2, 4)),
    ("stack", lambda c: c.stack([c.positive, c.interval(0.0, 2.0)], -1), (3, 2)),
]


@pytest.mark.parametrize("registry", ["biject_to", "transform_to"])
@pytest.mark.parametrize("case", REGISTRY, ids=[c[0] for c in REGISTRY])
def test_constraint_registry_matches_torch(registry, case):
    _, make, shape = case
    pc, tc = make(D.constraints), make(TD.constraints)
    try:
        tt = getattr(TD, registry)(tc)
    except NotImplementedError as e:
        with pytest.raises(NotImplementedError, match=str(e)):
            getattr(D, registry)(pc)
        return
    pt = getattr(D, registry)(pc)
    assert repr(pt) == repr(tt)
    assert (pt.domain.event_dim, pt.codomain.event_dim, pt.bijective) == \
        (tt.domain.event_dim, tt.codomain.event_dim, tt.bijective)
    x = RNG.standard_normal(shape)
    py, ty = pt(px.tensor(x)), tt(torch.tensor(x))
    close(py, ty, rtol=1e-9)
    assert bool(pc.check(py).all())
    if pt.bijective:
        close(pt.inv(px.tensor(ty.numpy())), tt.inv(ty), rtol=1e-8, atol=1e-10)
        close(pt.log_abs_det_jacobian(px.tensor(x), py),
              tt.log_abs_det_jacobian(torch.tensor(x), ty), rtol=1e-9)


def test_registry_errors_and_registration():
    with pytest.raises(NotImplementedError, match="Cannot transform _Boolean constraints"):
        D.biject_to(C.boolean)
    with pytest.raises(TypeError, match="Constraint subclass or instance"):
        D.biject_to.register(int, lambda c: None)
    registry = D.constraint_registry.ConstraintRegistry()

    @registry.register(C.positive)
    def _softplus(constraint):
        return D.SoftplusTransform()
    assert isinstance(registry(C.greater_than(0.0)), D.SoftplusTransform)
    with pytest.raises(NotImplementedError):
        registry(C.real)


# ---- constraints ----------------------------------------------------------------------------
CHECKS = [
    ("lower_triangular", lambda c: c.lower_triangular,
     np.stack([np.tril(RNG.standard_normal((3, 3))), RNG.standard_normal((3, 3))])),
    ("lower_cholesky", lambda c: c.lower_cholesky,
     np.stack([np.linalg.cholesky(spd(3)), -np.linalg.cholesky(spd(3))])),
    ("corr_cholesky", lambda c: c.corr_cholesky,
     np.stack([corr_cholesky(3), np.linalg.cholesky(spd(3))])),
    ("square", lambda c: c.square, RNG.standard_normal((2, 3, 4))),
    ("symmetric", lambda c: c.symmetric, np.stack([spd(3), RNG.standard_normal((3, 3))])),
    ("positive_definite", lambda c: c.positive_definite,
     np.stack([spd(3), -spd(3), np.diag([1.0, 0.0, 1.0])])),
    ("positive_semidefinite", lambda c: c.positive_semidefinite,
     np.stack([spd(3), -spd(3), np.diag([1.0, 0.0, 1.0])])),
    ("multinomial", lambda c: c.multinomial(4),
     np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 1.0], [-1.0, 2.0, 0.0]])),
    ("cat", lambda c: c.cat([c.positive, c.unit_interval], -1, [2, 1]),
     np.array([[1.0, 2.0, 0.5], [-1.0, 2.0, 2.0]])),
    ("stack", lambda c: c.stack([c.positive, c.unit_interval], 0),
     np.array([[1.0, -2.0], [0.5, 0.5]])),
    ("mixture", lambda c: c.MixtureSameFamilyConstraint(c.independent(c.positive, 1)),
     np.array([[1.0, 2.0], [1.0, -1.0]])),
]


@pytest.mark.parametrize("case", CHECKS, ids=[c[0] for c in CHECKS])
def test_constraint_checks_match_torch(case):
    _, make, value = case
    pc, tc = make(D.constraints), make(TD.constraints)
    got, want = pc.check(px.tensor(value)), tc.check(torch.tensor(value))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert (pc.event_dim, pc.is_discrete) == (tc.event_dim, tc.is_discrete)
    assert repr(pc) == repr(tc)
    assert set(D.constraints.__all__) == set(TD.constraints.__all__)


# ---- TransformedDistribution ----------------------------------------------------------------
def _arrays(**arrays):
    """Parameters drawn once, so that the phalanx and the torch distribution share them."""
    return arrays


_SB = _arrays(loc=RNG.standard_normal((2, 3)), scale=RNG.uniform(0.5, 2, (2, 3)))
_RS = _arrays(loc=RNG.standard_normal((4, 6)), scale=RNG.uniform(0.5, 2, 6))
_AF = _arrays(loc=RNG.standard_normal(3), scale=RNG.uniform(-2, 2, 3))
_DE = _arrays(rate=RNG.uniform(0.5, 2, 3))
_MV = _arrays(cov=spd(3), loc=RNG.standard_normal(3), scale=RNG.uniform(0.5, 2, 3))

TRANSFORMED = [
    ("stick_breaking", lambda m, d: d.TransformedDistribution(
        d.Normal(m.tensor(_SB["loc"]), m.tensor(_SB["scale"])), d.StickBreakingTransform()),
     np.random.default_rng(1).dirichlet(np.ones(4), (5, 2))),
    ("reshape", lambda m, d: d.TransformedDistribution(
        d.Normal(m.tensor(_RS["loc"]), m.tensor(_RS["scale"])),
        [d.ReshapeTransform((6,), (2, 3)), d.ExpTransform()]),
     RNG.uniform(0.1, 3, (5, 4, 2, 3))),
    ("affine_broadcasts_base", lambda m, d: d.TransformedDistribution(
        d.Normal(m.tensor(0.0, dtype=m.float64), m.tensor(1.0, dtype=m.float64)),
        d.AffineTransform(m.tensor(_AF["loc"]), m.tensor(_AF["scale"]))),
     RNG.standard_normal((2, 3))),
    ("decreasing", lambda m, d: d.TransformedDistribution(
        d.Exponential(m.tensor(_DE["rate"])), [d.AffineTransform(1.0, -2.0), d.ExpTransform()]),
     RNG.uniform(0.05, 2.5, (2, 3))),
    ("mvn_affine_event", lambda m, d: d.TransformedDistribution(
        d.MultivariateNormal(m.zeros(3, dtype=m.float64), m.tensor(_MV["cov"])),
        d.AffineTransform(m.tensor(_MV["loc"]), m.tensor(_MV["scale"]), event_dim=1)),
     RNG.standard_normal((2, 3))),
]


@pytest.mark.parametrize("case", TRANSFORMED, ids=[c[0] for c in TRANSFORMED])
def test_transformed_distribution_matches_torch(case):
    _, make, value = case
    pd, td = make(px, D), make(torch, TD)
    assert (tuple(pd.batch_shape), tuple(pd.event_shape)) == \
        (tuple(td.batch_shape), tuple(td.event_shape))
    assert pd.support.event_dim == td.support.event_dim
    close(pd.log_prob(px.tensor(value)), td.log_prob(torch.tensor(value)), rtol=1e-9)
    px.manual_seed(0)
    draws = pd.sample((3,))
    assert tuple(draws.shape) == tuple(td.sample((3,)).shape)
    assert bool(pd.support.check(draws).all())
    wide = pd.expand((2,) + tuple(pd.batch_shape))
    twide = td.expand((2,) + tuple(td.batch_shape))
    assert tuple(wide.batch_shape) == tuple(twide.batch_shape)
    close(wide.log_prob(px.tensor(value[:, None])), twide.log_prob(torch.tensor(value[:, None])),
          rtol=1e-9)
    if not pd.event_shape:
        close(pd.cdf(px.tensor(value)), td.cdf(torch.tensor(value)), rtol=1e-9)
        q = RNG.uniform(0.05, 0.95, value.shape)
        close(pd.icdf(px.tensor(q)), td.icdf(torch.tensor(q)), rtol=1e-9)


def test_transformed_distribution_errors():
    with pytest.raises(ValueError, match="transforms must be a Transform or list"):
        D.TransformedDistribution(D.Normal(0.0, 1.0), D.ExpTransform)
    with pytest.raises(ValueError, match="a list of Transforms"):
        D.TransformedDistribution(D.Normal(0.0, 1.0), [D.ExpTransform(), 3])
    with pytest.raises(ValueError, match="needs to have shape with size at least 1"):
        D.TransformedDistribution(D.Normal(0.0, 1.0), D.StickBreakingTransform())
    lognormal = D.LogNormal(px.tensor([0.0, 1.0]), px.tensor([1.0, 0.5])).expand((3, 2))
    assert isinstance(lognormal, D.LogNormal) and tuple(lognormal.sample().shape) == (3, 2)
