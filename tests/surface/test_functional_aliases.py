"""torch's top-level functional forms (torch.conv2d, torch.dropout, torch.kl_div, ...) with
their ATen signatures: forward and gradients against PyTorch on the same inputs."""
import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(11)
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated and it is just left for JIT")


def randn(*shape):
    return RNG.standard_normal(shape)


class Grad:
    """An input that requires grad (a float64 array)."""
    def __init__(self, a):
        self.a = a


def _to(lib, v, leaves):
    if isinstance(v, Grad):
        t = lib.tensor(v.a, requires_grad=True)
        leaves.append(t)
        return t
    if isinstance(v, np.ndarray):
        return lib.tensor(v)
    if isinstance(v, list) and v and isinstance(v[0], (np.ndarray, Grad)):
        return [_to(lib, x, leaves) for x in v]
    return v


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def run(lib, name, args, kwargs):
    leaves = []
    targs = [_to(lib, a, leaves) for a in args]
    tkw = {k: _to(lib, v, leaves) for k, v in kwargs.items()}
    outs = _outputs(getattr(lib, name)(*targs, **tkw))
    floats = [o for o in outs if o.is_floating_point()]
    if leaves and floats:
        total = sum((o * lib.tensor(np.cos(np.arange(o.numel())).reshape(tuple(o.shape))))
                    .sum() for o in floats)
        total.backward()
    return ([o.detach().numpy() for o in outs],
            [t.grad.numpy() if t.grad is not None else None for t in leaves])


x4 = randn(2, 3, 7, 6)
x3 = randn(2, 3, 9)
w2 = randn(4, 3, 3, 3)
w1 = randn(4, 3, 3)
p8 = RNG.uniform(0.05, 0.95, (4, 5))
t01 = (RNG.uniform(size=(4, 5)) > 0.5).astype(np.float64)
sign = np.sign(randn(6))
cases = {
    "conv1d": ([Grad(x3), Grad(w1), Grad(randn(4)), 2, 1], {}),
    "conv2d": ([Grad(x4), Grad(w2)], {"padding": "same", "dilation": 2}),
    "conv_transpose1d": ([Grad(x3), Grad(randn(3, 2, 3)), None, 2, 1, 1], {}),
    "conv_transpose2d": ([Grad(x4), Grad(randn(3, 4, 3, 3)), Grad(randn(4)), 2, 1, 1], {}),
    "convolution": ([Grad(x4), Grad(w2), None, [1, 2], [1, 0], [1, 1], False, [0, 0], 1], {}),
    "conv3d": ([Grad(randn(2, 4, 4, 5, 3)), Grad(randn(2, 2, 2, 3, 1)), Grad(randn(2)),
                [2, 1, 1], 1, 1, 2], {}),
    "conv_transpose3d": ([Grad(randn(1, 2, 3, 2, 2)), Grad(randn(2, 3, 2, 2, 2)), None, 2],
                         {"output_padding": 1}),
    "max_pool3d": ([Grad(randn(1, 2, 5, 4, 6)), [2, 2, 3]], {"padding": 1}),
    "conv_tbc": ([Grad(randn(9, 2, 3)), Grad(randn(3, 3, 4)), Grad(randn(4)), 1], {}),
    "max_pool1d": ([Grad(x3), 3], {"stride": [2], "padding": 1}),
    "max_pool1d_with_indices": ([Grad(x3), 2], {}),
    "max_pool2d": ([Grad(x4), [3, 2]], {"stride": [], "ceil_mode": True}),
    "avg_pool1d": ([Grad(x3), 3, [2], [1], False, False], {}),
    "adaptive_avg_pool1d": ([Grad(x3), 4], {}),
    "adaptive_max_pool1d": ([Grad(x3), 4], {}),
    "batch_norm": ([Grad(x4), Grad(randn(3)), Grad(randn(3)), randn(3), np.ones(3), True, 0.1,
                    1e-5, True], {}),
    "instance_norm": ([Grad(x4), Grad(randn(3)), Grad(randn(3)), None, None, True, 0.1, 1e-5,
                       False], {}),
    "layer_norm": ([Grad(x4), [7, 6], Grad(randn(7, 6)), Grad(randn(7, 6)), 1e-5, True], {}),
    "group_norm": ([Grad(randn(2, 4, 5)), 2, Grad(randn(4)), None, 1e-5, True], {}),
    "rms_norm": ([Grad(x4), [6], Grad(randn(6))], {"eps": 1e-6}),
    "norm_except_dim": ([Grad(randn(4, 3, 2)), 2, 1], {}),
    "frobenius_norm": ([Grad(randn(4, 3, 2)), [0, 2]], {"keepdim": True}),
    "nuclear_norm": ([Grad(randn(2, 4, 3)), [1, 2]], {}),
    "embedding": ([Grad(randn(10, 3)), np.array([[1, 2, 4], [4, 3, 9]]), 4], {}),
    "celu": ([Grad(randn(3, 4)), 0.7], {}),
    "selu": ([Grad(randn(3, 4))], {}),
    "prelu": ([Grad(x4), Grad(randn(3))], {}),
    "rrelu": ([Grad(randn(3, 4)), 0.1, 0.3], {}),
    "hardshrink": ([Grad(randn(3, 4)), 0.4], {}),
    "threshold": ([Grad(randn(3, 4)), 0.1, -2.0], {}),
    "cosine_similarity": ([Grad(randn(4, 5)), Grad(randn(4, 5)), 1], {}),
    "pairwise_distance": ([Grad(randn(4, 5)), Grad(randn(4, 5)), 3.0], {"keepdim": True}),
    "pdist": ([Grad(randn(5, 3)), 1.5], {}),
    "pixel_shuffle": ([Grad(randn(1, 8, 2, 3)), 2], {}),
    "pixel_unshuffle": ([Grad(randn(1, 2, 4, 6)), 2], {}),
    "channel_shuffle": ([Grad(randn(1, 6, 2, 2)), 3], {}),
    "bilinear": ([Grad(randn(4, 3)), Grad(randn(4, 2)), Grad(randn(5, 3, 2)), Grad(randn(5))],
                 {}),
    "constant_pad_nd": ([Grad(randn(2, 3)), [1, 2, 0, 1], 1.5], {}),
    "affine_grid_generator": ([Grad(randn(2, 2, 3)), [2, 1, 4, 5], False], {}),
    "grid_sampler": ([Grad(randn(1, 2, 4, 5)), Grad(RNG.uniform(-1, 1, (1, 3, 3, 2))), 0, 1,
                      True], {}),
    "binary_cross_entropy_with_logits": ([Grad(randn(4, 5)), t01, randn(4, 5) ** 2,
                                          np.abs(randn(5)), 2], {}),
    "ctc_loss": ([Grad(np.log(RNG.dirichlet(np.ones(5), (7, 2)))), np.array([[1, 2, 2], [3, 4, 1]]),
                  [7, 6], [3, 2], 0, 1], {}),
    "cosine_embedding_loss": ([Grad(randn(6, 4)), Grad(randn(6, 4)), sign, 0.2, 0], {}),
    "hinge_embedding_loss": ([Grad(randn(6)), sign, 0.5], {}),
    "kl_div": ([Grad(np.log(p8)), Grad(randn(4, 5))], {"reduction": 1, "log_target": True}),
    "margin_ranking_loss": ([Grad(randn(6)), Grad(randn(6)), sign, 0.3, 2], {}),
    "poisson_nll_loss": ([Grad(randn(4, 5)), RNG.poisson(2.0, (4, 5)).astype(float), True,
                          True, 1e-8, 1], {}),
    "triplet_margin_loss": ([Grad(randn(4, 5)), Grad(randn(4, 5)), Grad(randn(4, 5)), 1.0, 2.0,
                             1e-6, True, 0], {}),
    "rnn_tanh_cell": ([Grad(randn(3, 4)), Grad(randn(3, 5)), Grad(randn(5, 4)),
                       Grad(randn(5, 5)), Grad(randn(5)), Grad(randn(5))], {}),
    "rnn_relu_cell": ([Grad(randn(3, 4)), Grad(randn(3, 5)), Grad(randn(5, 4)),
                       Grad(randn(5, 5))], {}),
    "lstm_cell": ([Grad(randn(3, 4)), [Grad(randn(3, 5)), Grad(randn(3, 5))],
                   Grad(randn(20, 4)), Grad(randn(20, 5)), Grad(randn(20)), Grad(randn(20))],
                  {}),
    "gru_cell": ([Grad(randn(3, 4)), Grad(randn(3, 5)), Grad(randn(15, 4)), Grad(randn(15, 5)),
                  Grad(randn(15)), Grad(randn(15))], {}),
}


@pytest.mark.parametrize("name", sorted(cases))
def test_matches_torch(name):
    args, kwargs = cases[name]
    outs, grads = run(px, name, args, kwargs)
    t_outs, t_grads = run(torch, name, args, kwargs)
    assert len(outs) == len(t_outs)
    for o, t in zip(outs, t_outs):
        np.testing.assert_allclose(o, t, rtol=1e-6, atol=1e-8, err_msg=name)
    for g, t in zip(grads, t_grads):
        assert (g is None) == (t is None), name
        if g is not None:
            np.testing.assert_allclose(g, t, rtol=1e-6, atol=1e-8, err_msg=name)


def test_batch_norm_updates_running_stats_like_torch():
    x = randn(4, 3, 5)
    mean, var = np.zeros(3), np.ones(3)
    pm, pv, tm, tv = px.tensor(mean), px.tensor(var), torch.tensor(mean), torch.tensor(var)
    px.batch_norm(px.tensor(x), None, None, pm, pv, True, 0.3, 1e-5, False)
    torch.batch_norm(torch.tensor(x), None, None, tm, tv, True, 0.3, 1e-5, False)
    np.testing.assert_allclose(pm.numpy(), tm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(pv.numpy(), tv.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["dropout", "alpha_dropout", "feature_dropout",
                                  "feature_alpha_dropout"])
def test_dropouts_follow_the_train_flag(name):
    x = px.ones(8, 6, 5)
    assert getattr(px, name)(x, 0.5, False) is x or \
        np.array_equal(getattr(px, name)(x, 0.5, False).numpy(), x.numpy())
    px.manual_seed(0)
    y = getattr(px, name)(x, 0.5, True).numpy()
    assert not np.allclose(y, 1.0)
    if name == "feature_dropout":   # whole channels: constant along the last dim
        assert (y == y[..., :1]).all() and set(np.unique(y)) <= {0.0, 2.0}
    if name == "dropout":
        assert set(np.unique(y)) <= {0.0, 2.0}
    z = px.ones(8, 6, 5)
    assert getattr(px, name + "_")(z, 0.5, True) is z and not np.allclose(z.numpy(), 1.0)


def test_inplace_forms_write_their_input():
    for name, args in [("selu_", ()), ("celu_", (0.5,)), ("threshold_", (0.0, -1.0)),
                       ("rrelu_", (0.1, 0.3))]:
        a = randn(3, 4)
        t, tt = px.tensor(a), torch.tensor(a)
        assert getattr(px, name)(t, *args) is t
        getattr(torch, name)(tt, *args)
        np.testing.assert_allclose(t.numpy(), tt.numpy(), rtol=1e-12, err_msg=name)


def test_embedding_renorm_matches_torch():
    w = randn(6, 4) * 3
    idx = np.array([0, 2, 2, 5])
    pw, tw = px.tensor(w), torch.tensor(w)
    assert px.embedding_renorm_(pw, px.tensor(idx), 1.0, 2.0) is pw
    with torch.no_grad():
        torch.embedding_renorm_(tw, torch.tensor(idx), 1.0, 2.0)
    np.testing.assert_allclose(pw.numpy(), tw.numpy(), rtol=1e-6)


def test_loss_reduction_is_the_aten_int():
    a, b = px.randn(3), px.randn(3)
    with pytest.raises(ValueError, match="reduction must be an int"):
        px.kl_div(a, b, reduction="mean")
    with pytest.raises(NotImplementedError, match="generator"):
        px.rrelu(a, generator=px.Generator())


def test_conv_tbc_is_also_in_nn_functional():
    args = [randn(9, 2, 3), randn(3, 3, 4), randn(4)]
    np.testing.assert_allclose(
        px.nn.functional.conv_tbc(*[px.tensor(a) for a in args], 1).numpy(),
        torch.nn.functional.conv_tbc(*[torch.tensor(a) for a in args], 1).numpy(), rtol=1e-12)


def test_the_names_are_in_the_package_namespace():
    from phalanx import functional_aliases
    for name in functional_aliases.__all__:
        assert hasattr(torch, name), name
        assert getattr(px, name) is getattr(functional_aliases, name)
    assert set(functional_aliases.__all__) <= set(dir(px))
    assert not hasattr(px, "no_such_function")
