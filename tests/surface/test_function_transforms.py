"""phalanx.autograd.functional (jacobian, hessian, vjp, jvp, vhp, hvp) and phalanx.func
(grad, grad_and_value, vjp, jacrev, jacfwd, hessian, vmap, functional_call) against
PyTorch's on the same functions and inputs."""
import numpy as np
import pytest
import torch
import torch.autograd.functional as TAF
import torch.func as TF

import phalanx as px

PAF, PF = px.autograd.functional, px.func
RNG = np.random.default_rng(17)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.func's own
X, Y = RNG.standard_normal(3), RNG.standard_normal(4)


def _close(a, b):
    if isinstance(b, dict):
        assert set(a) == set(b)
        for k in b:
            _close(a[k], b[k])
    elif isinstance(b, (tuple, list)):
        assert len(a) == len(b)
        for p, t in zip(a, b):
            _close(p, t)
    else:
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)


def two_outputs(x, y):
    return x ** 2 * y.sum(), x.sin() @ y[:3]


def scalar(x):
    return (x ** 3).sum() + x[0] * x[1]


def _lib_args(lib, *arrays):
    return tuple(lib.tensor(a) for a in arrays)


@pytest.mark.parametrize("name, fn, arrays, v", [
    ("jacobian", two_outputs, (X, Y), None), ("jacobian", lambda a: a.exp(), (X,), None),
    ("hessian", scalar, (X,), None),
    ("vjp", two_outputs, (X, Y), (np.ones(3), np.array(1.0))),
    ("jvp", two_outputs, (X, Y), (np.ones(3), np.ones(4))),
    ("vhp", scalar, (X,), np.arange(3.0)), ("hvp", scalar, (X,), np.arange(3.0))])
def test_autograd_functional(name, fn, arrays, v):
    results = []
    for lib, module in ((px, PAF), (torch, TAF)):
        inputs = _lib_args(lib, *arrays)
        kwargs = {}
        if v is not None:
            kwargs["v"] = _lib_args(lib, *v) if isinstance(v, tuple) else lib.tensor(v)
        results.append(getattr(module, name)(fn, inputs if len(inputs) > 1 else inputs[0],
                                             **kwargs))
    _close(*results)


def test_autograd_functional_create_graph_keeps_the_graph():
    x = px.tensor(X, requires_grad=True)
    jac = PAF.jacobian(lambda a: a.exp() * a.sum(), x, create_graph=True)
    assert jac.requires_grad
    jac.sum().backward()
    t = torch.tensor(X, requires_grad=True)
    TAF.jacobian(lambda a: a.exp() * a.sum(), t, create_graph=True).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-10)
    assert not PAF.jacobian(lambda a: a * 2, px.tensor(X)).requires_grad


def test_func_transforms():
    f = lambda a: (a.sin() * a).sum()  # noqa: E731
    P, T = _lib_args(px, X)[0], _lib_args(torch, X)[0]
    _close(PF.grad(f)(P), TF.grad(f)(T))
    _close(PF.grad(lambda a: PF.grad(f)(a).sum())(P), TF.grad(lambda a: TF.grad(f)(a).sum())(T))
    g = lambda a, b: (a * b).sum() ** 2  # noqa: E731
    Z = X[::-1].copy()
    _close(PF.grad(g, argnums=(0, 1))(P, px.tensor(Z)),
           TF.grad(g, argnums=(0, 1))(T, torch.tensor(Z)))
    _close(PF.grad_and_value(f)(P), TF.grad_and_value(f)(T))
    aux = lambda a: ((a ** 2).sum(), a.mean())  # noqa: E731
    _close(PF.grad(aux, has_aux=True)(P), TF.grad(aux, has_aux=True)(T))
    h = lambda a: a.exp() * a[0]  # noqa: E731
    _close(PF.jacrev(h)(P), TF.jacrev(h)(T))
    _close(PF.jacfwd(h)(P), TF.jacfwd(h)(T))
    _close(PF.hessian(f)(P), TF.hessian(f)(T))
    p_out, p_fn = PF.vjp(h, P)
    t_out, t_fn = TF.vjp(h, T)
    _close(p_out, t_out)
    _close(p_fn(px.ones(3, dtype=px.float64)), t_fn(torch.ones(3, dtype=torch.float64)))
    assert not PF.grad(f)(P).requires_grad


def test_per_sample_gradients_with_vmap_and_functional_call():
    pm = px.nn.Linear(3, 1).double()
    tm = torch.nn.Linear(3, 1).double()
    tm.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in pm.state_dict().items()})
    xs, ys = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 1))

    def loss(F, model):
        return lambda params, x, y: ((F.functional_call(model, params, (x.unsqueeze(0),))
                                      - y.unsqueeze(0)) ** 2).mean()
    p_params = {k: v.detach() for k, v in pm.named_parameters()}
    t_params = {k: v.detach() for k, v in tm.named_parameters()}
    _close(PF.vmap(PF.grad(loss(PF, pm)), in_dims=(None, 0, 0))(p_params, px.tensor(xs),
                                                                px.tensor(ys)),
           TF.vmap(TF.grad(loss(TF, tm)), in_dims=(None, 0, 0))(t_params, torch.tensor(xs),
                                                                torch.tensor(ys)))
    assert isinstance(pm.weight, px.nn.Parameter)     # the module is left as it was


def test_functional_call_ties_and_strict():
    class Tied(px.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = px.nn.Linear(2, 2, bias=False)
            self.b = px.nn.Linear(2, 2, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))
    m = Tied()
    out = PF.functional_call(m, {"a.weight": px.eye(2) * 2}, (px.ones(1, 2),))
    np.testing.assert_allclose(out.detach().numpy(), [[4.0, 4.0]])   # both uses replaced
    assert m.b.weight is m.a.weight and isinstance(m.a.weight, px.nn.Parameter)
    for given, message in (({"weight": px.eye(2)}, "Missing key"),
                           ({"weight": px.eye(2), "bias": px.ones(2), "extra": px.ones(1)},
                            "Unexpected key")):
        with pytest.raises(RuntimeError, match=message):
            PF.functional_call(px.nn.Linear(2, 2), given, (px.ones(2),), strict=True)
        with pytest.raises(RuntimeError, match=message):
            TF.functional_call(torch.nn.Linear(2, 2),
                               {k: torch.tensor(v.numpy()) for k, v in given.items()},
                               (torch.ones(2),), strict=True)


def test_jacrev_and_vjp_take_parameter_dicts():
    """The neural-tangent-kernel tutorial's calls: jacrev and vjp of functional_call with
    respect to a dict of parameters give dicts, as torch.func's."""
    pm = px.nn.Linear(3, 2).double()
    tm = torch.nn.Linear(3, 2).double()
    tm.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in pm.state_dict().items()})
    x = RNG.standard_normal(3)
    p_params = {k: v.detach() for k, v in pm.named_parameters()}
    t_params = {k: v.detach() for k, v in tm.named_parameters()}
    _close(PF.jacrev(lambda p, v: PF.functional_call(pm, p, (v,)))(p_params, px.tensor(x)),
           TF.jacrev(lambda p, v: TF.functional_call(tm, p, (v,)))(t_params, torch.tensor(x)))
    _, p_fn = PF.vjp(lambda p: PF.functional_call(pm, p, (px.tensor(x),)), p_params)
    _, t_fn = TF.vjp(lambda p: TF.functional_call(tm, p, (torch.tensor(x),)), t_params)
    cotangent = RNG.standard_normal(2)
    (p_grads,), (t_grads,) = p_fn(px.tensor(cotangent)), t_fn(torch.tensor(cotangent))
    _close(p_grads, t_grads)


def test_stack_module_state_for_an_ensemble():
    """The model-ensembling tutorial: stacked parameters and buffers, vmapped through
    functional_call, give each model's own output."""
    models = [px.nn.Sequential(px.nn.Linear(3, 4), px.nn.BatchNorm1d(4)).eval()
              for _ in range(3)]
    params, buffers = PF.stack_module_state(models)
    assert tuple(params["0.weight"].shape) == (3, 4, 3) and params["0.weight"].requires_grad
    assert params["0.weight"].is_leaf and not buffers["1.running_mean"].requires_grad
    assert tuple(buffers["1.running_mean"].shape) == (3, 4)
    x = px.tensor(RNG.standard_normal((5, 3)), dtype=px.float32)
    base = models[0]
    out = PF.vmap(lambda p, b, v: PF.functional_call(base, (p, b), (v,)),
                  in_dims=(0, 0, None))(params, buffers, x)
    for i, m in enumerate(models):
        np.testing.assert_allclose(out[i].detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    with pytest.raises(RuntimeError, match="same training/eval mode"):
        PF.stack_module_state([models[0], models[1].train()])
