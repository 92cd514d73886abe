"""Layers and functionals that PyTorch tutorials use, added for the porting issue: activations,
padding, pixel/channel shuffle, upsampling, distances, instance/RMS/local-response norms,
BatchNorm3d and alpha dropout. Forward, input gradients, parameter gradients and running
statistics against PyTorch CPU on copied weights; PyTorch's module paths."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx import nn
from phalanx.nn import functional as F

RNG = np.random.default_rng(0)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float64)


def _copy_state(pm, tm):
    sd = {k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()}
    result = pm.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys


def _run_both(make, shapes, train=True, positive=False):
    tm, pm = make(torch.nn).double(), make(nn).double()
    _copy_state(pm, tm)
    tm.train(train)
    pm.train(train)
    xs = [np.abs(arr(*s)) + 0.1 if positive else arr(*s) for s in shapes]
    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    pxs = [px.tensor(x, requires_grad=True) for x in xs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_out, p_out = tm(*tx), pm(*pxs)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6,
                               atol=1e-9)
    w = arr(*t_out.shape)
    (t_out * torch.tensor(w)).sum().backward()
    (p_out * px.tensor(w)).sum().backward()
    for a, b in zip(pxs, tx):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-9)
    t_params = dict(tm.named_parameters())
    for name, p in pm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), t_params[name].grad.numpy(), rtol=1e-6,
                                   atol=1e-9, err_msg=name)
    t_buffers = dict(tm.named_buffers())
    for name, b in pm.named_buffers():
        np.testing.assert_allclose(b.numpy(), t_buffers[name].numpy(), rtol=1e-6, atol=1e-9,
                                   err_msg=name)
    assert repr(pm) == repr(tm)


LAYERS = [
    ("SELU", lambda L: L.SELU(), [(3, 5)]),
    ("CELU", lambda L: L.CELU(0.7), [(3, 5)]),
    ("GLU", lambda L: L.GLU(1), [(3, 6, 2)]),
    ("Threshold", lambda L: L.Threshold(0.1, -2.0), [(4, 5)]),
    ("Hardshrink", lambda L: L.Hardshrink(0.4), [(4, 5)]),
    ("Softshrink", lambda L: L.Softshrink(0.4), [(4, 5)]),
    ("Tanhshrink", lambda L: L.Tanhshrink(), [(4, 5)]),
    ("Softmax2d", lambda L: L.Softmax2d(), [(2, 3, 4, 4)]),
    ("PReLU", lambda L: L.PReLU(), [(2, 3, 4)]),
    ("PReLU-channels", lambda L: L.PReLU(3, init=0.1), [(2, 3, 4, 4)]),
    ("RReLU-eval", lambda L: L.RReLU(0.1, 0.3).eval(), [(4, 5)]),
    ("ZeroPad2d", lambda L: L.ZeroPad2d((1, 2, 0, 3)), [(2, 3, 4, 4)]),
    ("ConstantPad1d", lambda L: L.ConstantPad1d(2, 3.5), [(2, 3, 4)]),
    ("ConstantPad3d", lambda L: L.ConstantPad3d(1, -1.0), [(1, 2, 3, 3, 3)]),
    ("ReflectionPad2d", lambda L: L.ReflectionPad2d(2), [(2, 3, 5, 5)]),
    ("ReflectionPad1d", lambda L: L.ReflectionPad1d((1, 2)), [(3, 6)]),
    ("ReplicationPad2d", lambda L: L.ReplicationPad2d((1, 0, 2, 1)), [(2, 3, 4, 4)]),
    ("CircularPad1d", lambda L: L.CircularPad1d(2), [(2, 3, 5)]),
    ("PixelShuffle", lambda L: L.PixelShuffle(2), [(2, 8, 3, 3)]),
    ("PixelUnshuffle", lambda L: L.PixelUnshuffle(2), [(2, 2, 4, 6)]),
    ("ChannelShuffle", lambda L: L.ChannelShuffle(3), [(2, 6, 2, 2)]),
    ("Upsample-nearest", lambda L: L.Upsample(scale_factor=2), [(2, 3, 3, 4)]),
    ("Upsample-bilinear", lambda L: L.Upsample(size=(5, 7), mode="bilinear",
                                               align_corners=False), [(2, 3, 3, 4)]),
    ("UpsamplingNearest2d", lambda L: L.UpsamplingNearest2d(scale_factor=3), [(1, 2, 2, 2)]),
    ("UpsamplingBilinear2d", lambda L: L.UpsamplingBilinear2d(size=(4, 5)), [(1, 2, 3, 3)]),
    ("CosineSimilarity", lambda L: L.CosineSimilarity(dim=1), [(4, 5), (4, 5)]),
    ("PairwiseDistance", lambda L: L.PairwiseDistance(p=1.5), [(4, 5), (4, 5)]),
    ("InstanceNorm1d", lambda L: L.InstanceNorm1d(3), [(2, 3, 6)]),
    ("InstanceNorm2d-affine", lambda L: L.InstanceNorm2d(3, affine=True), [(2, 3, 4, 5)]),
    ("InstanceNorm2d-unbatched", lambda L: L.InstanceNorm2d(3, affine=True), [(3, 4, 5)]),
    ("InstanceNorm2d-running", lambda L: L.InstanceNorm2d(3, affine=True,
                                                          track_running_stats=True),
     [(2, 3, 4, 5)]),
    ("InstanceNorm3d", lambda L: L.InstanceNorm3d(2, momentum=0.3,
                                                  track_running_stats=True),
     [(2, 2, 3, 3, 3)]),
    ("BatchNorm3d", lambda L: L.BatchNorm3d(2), [(3, 2, 2, 3, 2)]),
    ("BatchNorm2d-nobias", lambda L: L.BatchNorm2d(2, bias=False), [(3, 2, 2, 3)]),
    ("RMSNorm", lambda L: L.RMSNorm(5), [(3, 4, 5)]),
    ("RMSNorm-eps", lambda L: L.RMSNorm((4, 5), eps=1e-3), [(3, 4, 5)]),
    ("LocalResponseNorm", lambda L: L.LocalResponseNorm(3, alpha=0.1), [(2, 5, 3, 3)]),
    ("LocalResponseNorm-even", lambda L: L.LocalResponseNorm(4, k=2.0), [(2, 6, 4)]),
    ("AlphaDropout-eval", lambda L: L.AlphaDropout(0.3).eval(), [(4, 5)]),
]


@pytest.mark.parametrize("name,make,shapes", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_layer_matches_torch(name, make, shapes):
    _run_both(make, shapes, train="eval" not in name)


def test_instance_norm_eval_uses_running_stats():
    tm = torch.nn.InstanceNorm2d(3, track_running_stats=True).double()
    pm = nn.InstanceNorm2d(3, track_running_stats=True).double()
    x = arr(2, 3, 4, 4)
    for _ in range(2):
        tm(torch.tensor(x))
        pm(px.tensor(x))
    tm.eval()
    pm.eval()
    y = arr(2, 3, 4, 4)
    np.testing.assert_allclose(pm(px.tensor(y)).numpy(), tm(torch.tensor(y)).numpy(),
                               rtol=1e-6)


FUNCTIONALS = [
    ("selu_", lambda M, x: M.selu_(x)),
    ("celu", lambda M, x: M.celu(x, alpha=2.0)),
    ("threshold", lambda M, x: M.threshold(x, 0.2, 0.0)),
    ("relu_", lambda M, x: M.relu_(x)),
    ("elu_", lambda M, x: M.elu_(x, 0.5)),
    ("leaky_relu_", lambda M, x: M.leaky_relu_(x, 0.2)),
    ("hardtanh_", lambda M, x: M.hardtanh_(x, -0.5, 0.5)),
    ("glu", lambda M, x: M.glu(x)),
    ("rms_norm", lambda M, x: M.rms_norm(x, (12,))),
    ("instance_norm", lambda M, x: M.instance_norm(x.reshape(2, 2, 6))),
    ("pixel_shuffle", lambda M, x: M.pixel_shuffle(x.reshape(2, 4, 1, 3), 2)),
    ("upsample_nearest", lambda M, x: M.upsample_nearest(x.reshape(2, 1, 4, 3), scale_factor=2)),
    ("upsample_bilinear", lambda M, x: M.upsample_bilinear(x.reshape(2, 1, 4, 3), size=(5, 5))),
    ("alpha_dropout-eval", lambda M, x: M.alpha_dropout(x, 0.5)),
]


@pytest.mark.parametrize("name,fn", FUNCTIONALS, ids=[n for n, _ in FUNCTIONALS])
def test_functional_matches_torch(name, fn):
    x = arr(2, 12)
    tx = torch.tensor(x, requires_grad=True)
    pxx = px.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_in, p_in = (tx.clone(), pxx.clone()) if name.endswith("_") else (tx, pxx)
        t_out, p_out = fn(torch.nn.functional, t_in), fn(F, p_in)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6,
                               atol=1e-9)
    w = arr(*t_out.shape)
    (t_out * torch.tensor(w)).sum().backward()
    (p_out * px.tensor(w)).sum().backward()
    np.testing.assert_allclose(pxx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-9)
    if name.endswith("_"):
        np.testing.assert_allclose(p_in.detach().numpy(), t_in.detach().numpy(), rtol=1e-6)


def test_random_activations_are_statistically_right():
    px.manual_seed(0)
    x = -px.ones(20000)
    slopes = -nn.RReLU(0.1, 0.3)(x).numpy()
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and abs(slopes.mean() - 0.2) < 0.01
    y = F.alpha_dropout(px.randn(200000, dtype=px.float64), 0.2, training=True).numpy()
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01   # SELU's fixed point kept
    logits = px.tensor([[0.0, 1.0, 2.0]], dtype=px.float64).repeat(20000, 1)
    hard = F.gumbel_softmax(logits, tau=0.5, hard=True)
    counts = hard.numpy().mean(0)
    assert set(np.unique(hard.numpy())) <= {0.0, 1.0}
    np.testing.assert_allclose(counts, np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), atol=0.02)


def test_errors_follow_torch():
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(px.ones(3, 5))
    with pytest.raises(RuntimeError, match="divisible by the square of upscale_factor"):
        F.pixel_shuffle(px.ones(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match=r"expected input's size at dim=1 to match "
                       r"num_features \(4\)"):
        nn.InstanceNorm2d(4, affine=True)(px.ones(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected 3D or 4D input"):
        nn.InstanceNorm2d(3)(px.ones(3, 4))
    with pytest.raises(RuntimeError, match="Mismatch of parameter numbers"):
        nn.PReLU(3)(px.ones(2, 4))
    with pytest.raises(NotImplementedError, match="out="):
        F.normalize(px.ones(2, 2), out=px.ones(2, 2))


def test_pytorch_module_paths():
    from phalanx.nn.modules.activation import MultiheadAttention
    from phalanx.nn.modules.batchnorm import _BatchNorm
    from phalanx.nn.modules.container import ModuleList, Sequential
    from phalanx.nn.modules.conv import _ConvNd
    from phalanx.nn.modules.instancenorm import InstanceNorm2d
    from phalanx.nn.modules.linear import NonDynamicallyQuantizableLinear
    from phalanx.nn.modules.loss import _Loss, _WeightedLoss
    from phalanx.nn.modules.module import Module
    from phalanx.nn.modules.padding import ReflectionPad2d
    from phalanx.nn.modules.utils import _pair, _quadruple, _single, _triple
    assert MultiheadAttention is nn.MultiheadAttention
    assert issubclass(nn.BatchNorm2d, _BatchNorm) and issubclass(nn.Conv2d, _ConvNd)
    assert issubclass(nn.CrossEntropyLoss, _WeightedLoss) and issubclass(nn.MSELoss, _Loss)
    assert isinstance(nn.MultiheadAttention(4, 2).out_proj, NonDynamicallyQuantizableLinear)
    assert Module is nn.Module and Sequential is nn.Sequential and ModuleList is nn.ModuleList
    assert InstanceNorm2d is nn.InstanceNorm2d and ReflectionPad2d is nn.ReflectionPad2d
    assert (_single(3), _pair(3), _triple((1, 2, 3)), _quadruple(0)) == \
        ((3,), (3, 3), (1, 2, 3), (0, 0, 0, 0))


@pytest.mark.parametrize("mode,layout", [
    (mode, layout) for mode in ("sum", "mean", "max")
    for layout in ("offsets", "offsets-last", "2d", "padding", "weights", "max_norm")
    if layout != "weights" or mode == "sum"])   # per_sample_weights: mode='sum' only
def test_embedding_bag_matches_torch(mode, layout):
    kw = dict(mode=mode, include_last_offset=layout == "offsets-last",
              padding_idx=2 if layout == "padding" else None,
              max_norm=1.0 if layout == "max_norm" else None)
    tm = torch.nn.EmbeddingBag(10, 4, **kw).double()
    pm = nn.EmbeddingBag(10, 4, **kw).double()
    _copy_state(pm, tm)
    index = np.array([1, 2, 4, 5, 4, 3, 2, 9, 2, 2])
    args_t, args_p = [], []
    if layout == "2d":
        index = index.reshape(2, 5)
    else:   # the third bag is empty; with padding_idx=2 the last one holds only padding
        offsets = [0, 4, 4, 8] + ([10] if layout == "offsets-last" else [])
        args_t, args_p = [torch.tensor(offsets)], [px.tensor(offsets)]
    if layout == "weights":
        w = arr(*index.shape)
        args_t.append(torch.tensor(w, requires_grad=True))
        args_p.append(px.tensor(w, requires_grad=True))
    t_out = tm(torch.tensor(index), *args_t)
    p_out = pm(px.tensor(index), *args_p)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6,
                               atol=1e-12)
    g = arr(*t_out.shape)
    (t_out * torch.tensor(g)).sum().backward()
    (p_out * px.tensor(g)).sum().backward()
    np.testing.assert_allclose(pm.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-6,
                               atol=1e-12)
    if layout == "weights":
        np.testing.assert_allclose(args_p[-1].grad.numpy(), args_t[-1].grad.numpy(),
                                   rtol=1e-6)
    np.testing.assert_allclose(pm.weight.detach().numpy(), tm.weight.detach().numpy(),
                               rtol=1e-12)      # max_norm renormalised the same rows
    assert repr(pm) == repr(tm)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_scales_gradients_by_each_index_count(mode):
    """scale_grad_by_freq divides each row's gradient by how often its index occurs in the
    batch. PyTorch 2.13's CPU EmbeddingBag divides by other counts (one occurrence of index 3
    among [1, 2, 4, 5, 4, 3, 2, 9, 2, 2] gets 1/4), so the oracle is its embedding, which
    counts right, reduced per bag."""
    index, offsets = [1, 2, 4, 5, 4, 3, 2, 9, 2, 2], [0, 4, 4, 8]
    w = arr(10, 3)
    tw, pw = torch.tensor(w, requires_grad=True), px.tensor(w, requires_grad=True)
    rows = torch.nn.functional.embedding(torch.tensor(index), tw, scale_grad_by_freq=True)
    bags = [rows[s:e] for s, e in zip(offsets, offsets[1:] + [len(index)])]
    reduce = {"sum": lambda r: r.sum(0), "mean": lambda r: r.mean(0),
              "max": lambda r: r.max(0).values}[mode]
    t_out = torch.stack([reduce(b) if len(b) else torch.zeros(3, dtype=b.dtype) for b in bags])
    p_out = F.embedding_bag(px.tensor(index), pw, px.tensor(offsets), mode=mode,
                            scale_grad_by_freq=True)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12)
    g = arr(*t_out.shape)
    (t_out * torch.tensor(g)).sum().backward()
    (p_out * px.tensor(g)).sum().backward()
    np.testing.assert_allclose(pw.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


def test_embedding_bag_errors():
    bag = nn.EmbeddingBag(5, 2, mode="mean")
    with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
        bag(px.tensor([1, 2]), px.tensor([0]), per_sample_weights=px.ones(2))
    with pytest.raises(ValueError, match="offsets has to be None"):
        bag(px.tensor([[1, 2]]), px.tensor([0]))
    with pytest.raises(RuntimeError, match="offsets\\[0\\] has to be 0"):
        bag(px.tensor([1, 2]), px.tensor([1]))
    with pytest.raises(ValueError, match="mode has to be one of"):
        F.embedding_bag(px.tensor([[1]]), bag.weight, mode="median")


@pytest.mark.skipif(px.cuda.is_available(), reason="describes a machine without a GPU")
def test_data_parallel_on_a_cpu_machine_wraps_like_torch():
    """Without a GPU, PyTorch's DataParallel calls the module directly (device_ids ignored);
    state-dict keys gain the `module.` prefix."""
    torch_dp = torch.nn.DataParallel(torch.nn.Linear(3, 2), device_ids=[0, 1])
    dp = nn.DataParallel(nn.Linear(3, 2), device_ids=[0, 1])
    assert list(dp.state_dict()) == list(torch_dp.state_dict()) == ["module.weight",
                                                                     "module.bias"]
    _copy_state(dp, torch_dp)
    x = arr(4, 3).astype(np.float32)
    np.testing.assert_allclose(dp(px.tensor(x)).detach().numpy(),
                               torch_dp(torch.tensor(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert dp.device_ids == torch_dp.device_ids == []
    assert isinstance(dp.module, nn.Linear)


@pytest.mark.parametrize("name,shape,size", [
    ("AdaptiveMaxPool2d", (2, 3, 7, 5), (3, 2)), ("AdaptiveMaxPool2d", (1, 2, 6, 6), 4),
    ("AdaptiveMaxPool2d", (3, 5, 4), (None, 3)), ("AdaptiveMaxPool1d", (2, 3, 10), 4)])
def test_adaptive_max_pool_matches_torch(name, shape, size):
    _run_both(lambda L: getattr(L, name)(size), [shape])
    x = arr(*shape)
    t_out, t_idx = getattr(torch.nn, name)(size, return_indices=True)(torch.tensor(x))
    p_out, p_idx = getattr(nn, name)(size, return_indices=True)(px.tensor(x))
    np.testing.assert_array_equal(p_out.numpy(), t_out.numpy())
    np.testing.assert_array_equal(p_idx.numpy(), t_idx.numpy())


@pytest.mark.parametrize("mode,padding_mode,align_corners", [
    (mode, padding, align) for mode in ("bilinear", "nearest", "bicubic")
    for padding in ("zeros", "border", "reflection") for align in (False, True)])
def test_affine_grid_and_grid_sample_match_torch(mode, padding_mode, align_corners):
    """The spatial transformer tutorial's pair: a grid from affine matrices, then sampling
    (positions past the border included); gradients w.r.t. the input and theta."""
    # no sampling position may land on an integer pixel, where bilinear sampling has a kink
    # and the one-sided gradient depends on rounding
    theta = np.array([[[1.2137, -0.3121, 0.1043], [0.2071, 0.9133, -0.2519]],
                      [[0.7177, 0.4031, 0.3529], [-0.5083, 1.1027, 0.0571]]])
    x = arr(2, 3, 5, 6)
    tt, pt = torch.tensor(theta, requires_grad=True), px.tensor(theta, requires_grad=True)
    tx, pxx = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    size = (2, 3, 4, 7)
    t_grid = torch.nn.functional.affine_grid(tt, size, align_corners=align_corners)
    p_grid = F.affine_grid(pt, size, align_corners=align_corners)
    np.testing.assert_allclose(p_grid.detach().numpy(), t_grid.detach().numpy(), rtol=1e-7,
                               atol=1e-15)
    t_out = torch.nn.functional.grid_sample(tx, t_grid, mode, padding_mode, align_corners)
    p_out = F.grid_sample(pxx, p_grid, mode, padding_mode, align_corners)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6,
                               atol=1e-12)
    g = arr(*t_out.shape)
    (t_out * torch.tensor(g)).sum().backward()
    (p_out * px.tensor(g)).sum().backward()
    np.testing.assert_allclose(pxx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-12)
    if mode == "nearest":   # piecewise constant: a zero gradient, the grid still linked
        assert not pt.grad.abs().sum() and not tt.grad.abs().sum()
    else:
        np.testing.assert_allclose(pt.grad.numpy(), tt.grad.numpy(), rtol=1e-6, atol=1e-10)
    with pytest.warns(UserWarning, match="align_corners=False since 1.3.0"):
        F.affine_grid(pt, size)


@pytest.mark.parametrize("dims,shape,kw,output_size", [
    (2, (2, 3, 6, 8), dict(kernel_size=2), None),
    (2, (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1), (1, 2, 8, 8)),
    (1, (2, 3, 9), dict(kernel_size=3, stride=2), None)])
def test_max_unpool_matches_torch(dims, shape, kw, output_size):
    x = arr(*shape)
    pool, unpool = f"MaxPool{dims}d", f"MaxUnpool{dims}d"
    t_out, t_idx = getattr(torch.nn, pool)(return_indices=True, **kw)(torch.tensor(x))
    p_out, p_idx = getattr(F, f"max_pool{dims}d_with_indices")(px.tensor(x), **kw)
    np.testing.assert_array_equal(p_idx.numpy(), t_idx.numpy())
    tv = t_out.detach().requires_grad_()
    pv = px.tensor(p_out.numpy(), requires_grad=True)
    t_un = getattr(torch.nn, unpool)(**kw)(tv, t_idx, output_size=output_size)
    p_un = getattr(nn, unpool)(**kw)(pv, p_idx, output_size=output_size)
    np.testing.assert_array_equal(p_un.detach().numpy(), t_un.detach().numpy())
    g = arr(*t_un.shape)
    (t_un * torch.tensor(g)).sum().backward()
    (p_un * px.tensor(g)).sum().backward()
    np.testing.assert_allclose(pv.grad.numpy(), tv.grad.numpy())


@pytest.mark.parametrize("kw,shape", [
    (dict(kernel_size=2), (2, 3, 4, 5)),
    (dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=(2, 1)), (1, 2, 6, 7)),
    (dict(kernel_size=3, padding=1), (2, 5, 5))])
def test_unfold_and_fold_match_torch(kw, shape):
    _run_both(lambda L: L.Unfold(**kw), [shape])
    cols = torch.nn.functional.unfold(torch.zeros(shape if len(shape) == 4 else (1,) + shape),
                                      **kw)
    col_shape = tuple(cols.shape) if len(shape) == 4 else tuple(cols.shape[1:])
    _run_both(lambda L: L.Fold(shape[-2:], **kw), [col_shape])


def test_old_spellings_pytorch_still_accepts():
    with pytest.warns(FutureWarning, match="nn.Container` is deprecated"):
        c = nn.Container(fc=nn.Linear(2, 3))
    assert list(c.state_dict()) == ["fc.weight", "fc.bias"]
    grads = {}
    for lib in (torch, px):
        w = lib.nn.Parameter(lib.ones(4))
        w.grad = lib.tensor([3.0, 4.0, 0.0, 0.0])
        with pytest.warns(FutureWarning, match="clip_grad_norm` is now deprecated"):
            total = lib.nn.utils.clip_grad_norm([w], 1.0)
        v = lib.nn.Parameter(lib.ones(2))
        v.grad = lib.tensor([6.0, 8.0])
        lib.nn.utils.clip_grads_with_norm_([v], 2.0, lib.tensor(10.0))
        grads[lib.__name__] = [float(total)] + w.grad.tolist() + v.grad.tolist()
    np.testing.assert_allclose(grads["phalanx"], grads["torch"], rtol=1e-6)


LAZY = [
    ("LazyLinear", lambda L: L.LazyLinear(5), (3, 7)),
    ("LazyConv1d", lambda L: L.LazyConv1d(4, 3, padding=1), (2, 3, 8)),
    ("LazyConv2d", lambda L: L.LazyConv2d(4, 3, groups=2, bias=False), (2, 6, 5, 5)),
    ("LazyConvTranspose2d", lambda L: L.LazyConvTranspose2d(3, 2, stride=2), (2, 4, 3, 3)),
    ("LazyConvTranspose1d", lambda L: L.LazyConvTranspose1d(3, 2), (2, 4, 5)),
    ("LazyBatchNorm1d", lambda L: L.LazyBatchNorm1d(), (4, 3)),
    ("LazyBatchNorm2d", lambda L: L.LazyBatchNorm2d(affine=False), (4, 3, 2, 2)),
    ("LazyInstanceNorm2d", lambda L: L.LazyInstanceNorm2d(), (2, 3, 4, 4)),
    ("LazyBatchNorm3d", lambda L: L.LazyBatchNorm3d(bias=False), (2, 3, 2, 2, 2)),
]


@pytest.mark.parametrize("name,make,shape", LAZY, ids=[n for n, _, _ in LAZY])
def test_lazy_layers_materialise_like_torch(name, make, shape):
    tm, pm = make(torch.nn), make(nn)
    assert repr(pm) == repr(tm)
    params_before = list(pm.parameters())
    # an optimizer built before the weights have a shape
    opt = px.optim.SGD(params_before, lr=0.5) if params_before else None
    x = arr(*shape).astype(np.float32)
    t_out, p_out = tm(torch.tensor(x)), pm(px.tensor(x))
    assert type(pm).__name__ == type(tm).__name__ and repr(pm) == repr(tm)
    assert [tuple(p.shape) for p in pm.parameters()] == \
        [tuple(p.shape) for p in tm.parameters()]
    assert all(a is b for a, b in zip(params_before, pm.parameters()))
    _copy_state(pm, tm)
    pm.train(), tm.train()
    t_out, p_out = tm(torch.tensor(x)), pm(px.tensor(x))
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    if params_before:
        before = params_before[0].detach().numpy().copy()
        p_out.square().sum().backward()
        opt.step()
        assert not np.array_equal(params_before[0].detach().numpy(), before)


def test_lazy_module_loads_a_state_dict():
    source = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4))
    target = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())
    _copy_state(target, source)
    assert repr(target) == repr(source)
    x = arr(5, 6).astype(np.float32)
    source.eval(), target.eval()
    np.testing.assert_allclose(target(px.tensor(x)).detach().numpy(),
                               source(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,make,shape", [
    ("LPPool2d", lambda L: L.LPPool2d(2, 2), (2, 3, 4, 5)),
    ("LPPool2d-p3", lambda L: L.LPPool2d(3.0, (2, 3), stride=1), (1, 2, 4, 5)),
    ("LPPool1d", lambda L: L.LPPool1d(1.5, 3, stride=2, ceil_mode=True), (2, 3, 8)),
    ("LPPool2d-inf", lambda L: L.LPPool2d(float("inf"), 2), (2, 3, 4, 4))])
def test_lp_pool_matches_torch(name, make, shape):
    # odd or fractional powers of negative numbers are not real: keep those inputs positive
    _run_both(make, [shape], positive="p3" in name or "1d" in name)


@pytest.mark.parametrize("rows", [5, 40])     # 40: through cdist's matrix products
def test_pdist_matches_torch(rows):
    x = arr(rows, 3)
    x[3] = x[1]                                 # a zero distance: a zero gradient
    tx, pxx = torch.tensor(x, requires_grad=True), px.tensor(x, requires_grad=True)
    for p in (2.0, 1.0):
        t_out, p_out = torch.nn.functional.pdist(tx, p), F.pdist(pxx, p)
        np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-7)
        g = arr(*t_out.shape)
        tx.grad = pxx.grad = None
        (t_out * torch.tensor(g)).sum().backward()
        (p_out * px.tensor(g)).sum().backward()
        np.testing.assert_allclose(pxx.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("make,dim,shape", [
    (lambda L: L.Linear(4, 3), 0, (5, 4)),
    (lambda L: L.Conv2d(2, 3, 3), 0, (2, 2, 5, 5)),
    (lambda L: L.Conv1d(2, 3, 3), 2, (2, 2, 6)),
    (lambda L: L.Linear(4, 3), None, (5, 4))])
def test_weight_norm_matches_torch(make, dim, shape):
    def build(L):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return L.nn.utils.weight_norm(make(L.nn).double(), dim=dim)
    tm, pm = build(torch), build(px)
    assert list(pm.state_dict()) == list(tm.state_dict())
    _copy_state(pm, tm)
    _run_both(lambda L: tm if L is torch.nn else pm, [shape])
    with pytest.raises(RuntimeError, match="Cannot register two weight_norm hooks"), \
            pytest.warns(FutureWarning, match="weight_norm` is deprecated"):
        px.nn.utils.weight_norm(pm, dim=dim)
    px.nn.utils.remove_weight_norm(pm)
    torch.nn.utils.remove_weight_norm(tm)
    assert list(pm.state_dict()) == list(tm.state_dict())
    np.testing.assert_allclose(pm.weight.detach().numpy(), tm.weight.detach().numpy(),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="weight_norm of 'weight' not found"):
        px.nn.utils.remove_weight_norm(pm)


@pytest.mark.parametrize("make,shape", [
    (lambda L: L.Linear(5, 4), (3, 5)),
    (lambda L: L.Conv2d(2, 3, 3), (2, 2, 5, 5)),
    (lambda L: L.ConvTranspose2d(3, 2, 2), (1, 3, 3, 3))])
def test_spectral_norm_matches_torch(make, shape):
    tm = torch.nn.utils.spectral_norm(make(torch.nn).double(), n_power_iterations=2)
    pm = px.nn.utils.spectral_norm(make(nn).double(), n_power_iterations=2)
    assert list(pm.state_dict()) == list(tm.state_dict())
    _copy_state(pm, tm)
    for _ in range(2):   # training forwards run the power iteration and move u and v
        _run_both(lambda L: tm if L is torch.nn else pm, [shape])
    tm.eval(), pm.eval()
    x = arr(*shape)
    np.testing.assert_allclose(pm(px.tensor(x)).detach().numpy(),
                               tm(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    px.nn.utils.remove_spectral_norm(pm)
    torch.nn.utils.remove_spectral_norm(tm)
    assert list(pm.state_dict()) == list(tm.state_dict())
    np.testing.assert_allclose(pm.weight.detach().numpy(), tm.weight.detach().numpy(),
                               rtol=1e-10)


@pytest.mark.parametrize("kind", ["conv", "convT", "linear"])
def test_fuse_with_batch_norm_matches_torch(kind):
    def build(L):
        L.manual_seed(0)
        if kind == "linear":
            layer, bn, shape = L.nn.Linear(4, 3), L.nn.BatchNorm1d(3), (5, 4)
        elif kind == "conv":
            layer, bn, shape = L.nn.Conv2d(2, 3, 3, bias=False), L.nn.BatchNorm2d(3), (2, 2, 5, 5)
        else:
            layer, bn, shape = L.nn.ConvTranspose2d(2, 3, 2), L.nn.BatchNorm2d(3), (2, 2, 3, 3)
        return layer.double(), bn.double(), shape
    (tl, tb, shape), (pl, pb, _) = build(torch), build(px)
    _copy_state(pl, tl)
    x = arr(*shape)
    tb(tl(torch.tensor(x)))    # one training batch gives the running statistics
    pb(pl(px.tensor(x)))
    for m in (tl, tb, pl, pb):
        m.eval()
    if kind == "linear":
        tf, pf = (lib.nn.utils.fuse_linear_bn_eval(a, b) for lib, a, b in
                  ((torch, tl, tb), (px, pl, pb)))
    else:
        tf, pf = (lib.nn.utils.fuse_conv_bn_eval(a, b, transpose=kind == "convT") for
                  lib, a, b in ((torch, tl, tb), (px, pl, pb)))
    y = arr(*shape)
    np.testing.assert_allclose(pf(px.tensor(y)).detach().numpy(),
                               tf(torch.tensor(y)).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pf(px.tensor(y)).detach().numpy(),
                               pb(pl(px.tensor(y))).detach().numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        px.nn.utils.fuse_conv_bn_eval(pl.train(), pb)


def test_stateless_functional_call_matches_torch():
    """MAML's inner step: the module runs with updated weights that stay in the graph, so
    gradients reach the original parameters; the module's own weights come back after."""
    results = {}
    for lib in (torch, px):
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.Tanh(), lib.nn.Linear(4, 1))
        if lib is px:
            _copy_state(model, results["torch_model"])
        x = lib.tensor(np.linspace(-1, 1, 15).reshape(5, 3), dtype=lib.float32)
        params = dict(model.named_parameters())
        inner = (model(x) ** 2).mean()
        grads = lib.autograd.grad(inner, list(params.values()), create_graph=True)
        fast = {k: p - 0.1 * g for (k, p), g in zip(params.items(), grads)}
        with pytest.warns(FutureWarning, match="functional_call` is deprecated"):
            outer = (lib.nn.utils.stateless.functional_call(model, fast, (x,)) ** 2).mean()
        outer.backward()
        results[lib.__name__] = (outer.item(), [p.grad.numpy().copy() for p in
                                                model.parameters()],
                                 model(x).detach().numpy())
        results[f"{lib.__name__}_model"] = model
    assert results["phalanx"][0] == pytest.approx(results["torch"][0], rel=1e-5)
    for a, b in zip(results["phalanx"][1], results["torch"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(results["phalanx"][2], results["torch"][2], rtol=1e-5,
                               atol=1e-6)   # the module's own weights are back
    with pytest.raises(RuntimeError, match="Unexpected key\\(s\\): 'nope'"):
        px.nn.utils.stateless._functional_call(results["phalanx_model"], {"nope": px.ones(1)},
                                               (px.ones(1, 3),), strict=True)


@pytest.mark.parametrize("name,fn", [f for f in FUNCTIONALS if f[0].endswith("_")],
                         ids=[n for n, _ in FUNCTIONALS if n.endswith("_")])
def test_inplace_functional_is_one_op_on_the_graph(name, fn):
    """An in-place activation becomes the input's new place in the graph directly (no second
    node copying its values in), and a value saved by an earlier op still may not change."""
    def nodes_after(t, start):
        """The names of the graph nodes from t back to the node `start` (excluded)."""
        seen, todo = {}, [t.grad_fn]
        while todo:
            node = todo.pop()
            if node is not None and node is not start and id(node) not in seen:
                seen[id(node)] = node.name()
                todo += [n for n, _ in node.next_functions]
        return sorted(seen.values())

    x = px.tensor(arr(2, 12), requires_grad=True)
    y = x * 1.0
    start = y.grad_fn
    out = fn(F, y)
    assert out is y and y._version[0] == 1
    nodes = nodes_after(y, start)
    assert nodes and "OverwriteBackward0" not in nodes, nodes
    saved = x * 1.0
    z = saved * saved                      # saves `saved`, which the activation then changes
    fn(F, saved)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        fn(F, px.tensor(arr(2, 12), requires_grad=True))
