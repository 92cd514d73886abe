"""The fused GPU kernels: their sources compile with NVRTC (needs CuPy, no GPU), the reference
of each kernel's math equals the unfused path on the CPU, and on a GPU each kernel equals its
reference (skipped without one)."""
import numpy as np
import pytest

import phalanx as px
import phalanx.nn.functional as F
from phalanx.nn.functional import (cuda_kernels, fused_activation, fused_loss,
                                   fused_normalization)
from phalanx.optim import fused as fused_optim

SOURCES = [(fused_activation.SOURCE, ["gelu_forward", "gelu_backward"]),
           (fused_loss.SOURCE, ["log_softmax_forward", "cross_entropy_forward",
                                "cross_entropy_backward"]),
           (fused_normalization.SOURCE, ["layer_norm_forward", "layer_norm_backward"]),
           (fused_optim.SOURCE, ["sgd_multi", "adam_multi"])]


def _nvrtc_or_skip():
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as e:  # CuPy or its NVRTC library missing
        pytest.skip(f"CuPy with NVRTC is not installed ({e!r}); pip install "
                    f"'phalanx[cuda-kernels]' to compile the fused kernels on the CPU")


def _gpu():
    try:
        return px.cuda.is_available()
    except Exception:
        return False


gpu = pytest.mark.skipif(not _gpu(), reason="needs an NVIDIA GPU (benchmarks/gpu_check.sh)")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("source, names", SOURCES, ids=["gelu", "loss", "layer_norm", "optim"])
def test_kernel_sources_compile_to_ptx(source, names, dtype):
    _nvrtc_or_skip()
    ptx = cuda_kernels.compile_ptx(cuda_kernels.typed_source(source, dtype)).decode()
    for name in names:
        assert f".entry {name}(" in ptx
    if dtype == "float64":
        assert ".f64" in ptx


def test_kernels_for_numpy_is_the_unfused_path():
    for module in (fused_activation, fused_loss, fused_normalization, fused_optim):
        assert module.kernels_for(np) is None


# --- each kernel's math equals the unfused path (CPU) -------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_reference_matches_unfused(approximate):
    x = np.random.default_rng(0).normal(size=(5, 7)) * 3
    t = px.tensor(x, requires_grad=True)
    y = F.gelu(t, approximate=approximate)
    y.backward(px.ones_like(y))
    ref_y, ref_slope = fused_activation.gelu_reference(x, approximate)
    np.testing.assert_allclose(y.detach().numpy(), ref_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), ref_slope, rtol=1e-10, atol=1e-12)


def test_cross_entropy_reference_matches_unfused():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)) * 4
    target = np.array([0, 4, -100, 2, 2, 1])
    weight = rng.uniform(0.5, 2, size=5)
    t = px.tensor(x, requires_grad=True)
    loss = F.cross_entropy(t, px.tensor(target), weight=px.tensor(weight), reduction="none")
    g = rng.normal(size=6)
    loss.backward(px.tensor(g))
    ref, lse, w = fused_loss.cross_entropy_reference(x, target, weight)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-12)
    grad = fused_loss.cross_entropy_grad_reference(x, target, w, lse, g)
    np.testing.assert_allclose(t.grad.numpy(), grad, rtol=1e-10, atol=1e-12)
    log_sm = F.log_softmax(px.tensor(x), dim=1).numpy()
    np.testing.assert_allclose(log_sm, x - lse[:, None], rtol=1e-12)


def test_layer_norm_reference_matches_unfused():
    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(4, 9)), rng.normal(size=9), rng.normal(size=9)
    tx, tw, tb = (px.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.layer_norm(tx, (9,), tw, tb, eps=1e-5)
    gy = rng.normal(size=(4, 9))
    y.backward(px.tensor(gy))
    ref_y, mean, rstd = fused_normalization.layer_norm_reference(x, w, b, 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), ref_y, rtol=1e-10, atol=1e-12)
    gx, gw, gb = fused_normalization.layer_norm_grad_reference(x, gy, w, mean, rstd)
    for got, want in ((tx.grad, gx), (tw.grad, gw), (tb.grad, gb)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-11)


def _params(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in [(3, 4), (5,), (2, 2, 2)]], \
        [[rng.normal(size=s) for s in [(3, 4), (5,), (2, 2, 2)]] for _ in range(3)]


@pytest.mark.parametrize("kind, kwargs", [
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False)),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=True)),
    ("adam", dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
    ("adamw", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
])
def test_multi_tensor_reference_matches_unfused_optimizers(kind, kwargs):
    start, grads_per_step = _params(3)
    tensors = [px.nn.Parameter(px.tensor(p.copy())) for p in start]
    cls = {"sgd": px.optim.SGD, "adam": px.optim.Adam, "adamw": px.optim.AdamW}[kind]
    opt = cls(tensors, **kwargs)
    ref = [p.copy() for p in start]
    state = [[np.zeros_like(p) for p in start] for _ in range(2)]
    for step, grads in enumerate(grads_per_step, 1):
        for t, g in zip(tensors, grads):
            t.grad = px.tensor(g)
        opt.step()
        if kind == "sgd":
            k = dict(kwargs)
            fused_optim.sgd_reference(ref, grads, state[0], k.pop("lr"), first_step=step == 1,
                                      **k)
        else:
            b1, b2 = kwargs["betas"]
            fused_optim.adam_reference(ref, grads, state[0], state[1], step, kwargs["lr"], b1,
                                       b2, kwargs["eps"], kwargs["weight_decay"],
                                       decoupled=kind == "adamw")
    for t, r in zip(tensors, ref):
        np.testing.assert_allclose(t.detach().numpy(), r, rtol=1e-10, atol=1e-12)


# --- on a GPU: each kernel equals its reference ------------------------------------------------
@gpu
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gpu_gelu_kernel(approximate):
    import cupy as cp
    x = cp.random.standard_normal((33, 1000)).astype(cp.float32) * 3
    k = fused_activation.kernels_for(cp)
    y_ref, slope = fused_activation.gelu_reference(x, approximate)
    cp.testing.assert_allclose(k.forward(x, approximate), y_ref, rtol=1e-5, atol=1e-6)
    gy = cp.random.standard_normal(x.shape).astype(cp.float32)
    cp.testing.assert_allclose(k.backward(x, gy, approximate), gy * slope, rtol=1e-4,
                               atol=1e-5)


@gpu
@pytest.mark.parametrize("classes", [5, 1000, 5000])
def test_gpu_cross_entropy_kernels(classes):
    import cupy as cp
    x = cp.random.standard_normal((64, classes)) * 4
    target = cp.random.randint(0, classes, 64)
    target[3] = -100
    weight = cp.random.uniform(0.5, 2, classes)
    k = fused_loss.kernels_for(cp)
    loss, lse, w = k.forward(x, target, weight)
    ref, ref_lse, ref_w = fused_loss.cross_entropy_reference(x, target, weight)
    cp.testing.assert_allclose(loss, ref, rtol=1e-10)
    g = cp.random.standard_normal(64)
    cp.testing.assert_allclose(k.backward(x, target, w, lse, g),
                               fused_loss.cross_entropy_grad_reference(x, target, ref_w,
                                                                       ref_lse, g), atol=1e-12)
    cp.testing.assert_allclose(k.softmax(x, log=True), x - ref_lse[:, None], atol=1e-12)


@gpu
@pytest.mark.parametrize("width", [7, 1024, 4099])
def test_gpu_layer_norm_kernels(width):
    import cupy as cp
    x = cp.random.standard_normal((16, width)) + 3
    w, b = cp.random.standard_normal(width), cp.random.standard_normal(width)
    k = fused_normalization.kernels_for(cp)
    y, mean, rstd = k.forward(x, w, b, 1e-5)
    ref_y, ref_mean, ref_rstd = fused_normalization.layer_norm_reference(x, w, b, 1e-5)
    cp.testing.assert_allclose(y, ref_y, atol=1e-10)
    gy = cp.random.standard_normal(x.shape)
    for got, want in zip(k.backward(x, gy, w, mean, rstd),
                         fused_normalization.layer_norm_grad_reference(x, gy, w, ref_mean,
                                                                       ref_rstd)):
        cp.testing.assert_allclose(got, want, atol=1e-9)


@gpu
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_gpu_multi_tensor_kernels(kind):
    import cupy as cp
    shapes = [(300, 7), (5,), (1,), (64, 64, 3)]
    params = [cp.random.standard_normal(s, dtype=cp.float32) for s in shapes]
    grads = [cp.random.standard_normal(s, dtype=cp.float32) for s in shapes]
    m = [cp.random.standard_normal(s, dtype=cp.float32) for s in shapes]
    v = [cp.random.uniform(0, 1, s).astype(cp.float32) for s in shapes]
    ref = [[a.copy() for a in arrays] for arrays in (params, m, v)]
    k = fused_optim.kernels_for(cp)
    if kind == "sgd":
        k.sgd(params, grads, m, 0.1, momentum=0.9, dampening=0.1, weight_decay=0.01,
              nesterov=True, first_step=False)
        fused_optim.sgd_reference(ref[0], grads, ref[1], 0.1, momentum=0.9, dampening=0.1,
                                  weight_decay=0.01, nesterov=True, first_step=False)
    else:
        k.adam(params, grads, m, v, 3, 0.01, 0.9, 0.999, 1e-8, 0.1, decoupled=kind == "adamw")
        fused_optim.adam_reference(ref[0], grads, ref[1], ref[2], 3, 0.01, 0.9, 0.999, 1e-8,
                                   0.1, decoupled=kind == "adamw")
    for got, want in zip(params + m, ref[0] + ref[1]):
        cp.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- the hooks and Functions around the kernels, with NumPy stand-ins for them (CPU) -----------
class NumpyGelu:
    def forward(self, x, approximate):
        return fused_activation.gelu_reference(x, approximate)[0]

    def backward(self, x, gy, approximate):
        return gy * fused_activation.gelu_reference(x, approximate)[1]


class NumpyLayerNorm:
    def forward(self, x, w, b, eps):
        return fused_normalization.layer_norm_reference(x, w, b, eps)

    def backward(self, x, gy, w, mean, rstd):
        return fused_normalization.layer_norm_grad_reference(x, gy, w, mean, rstd)


class NumpyMultiTensor(fused_optim.MultiTensorKernels):
    calls = 0

    def __init__(self):
        super().__init__(np)

    def sgd(self, *args, **kwargs):
        NumpyMultiTensor.calls += 1
        fused_optim.sgd_reference(*args, **kwargs)

    def adam(self, *args, **kwargs):
        NumpyMultiTensor.calls += 1
        fused_optim.adam_reference(*args, **kwargs)


def _grads_and_second(fn, x, *others):
    """fn's value, first gradients and the gradient of their sum of squares (double backward)."""
    inputs = [x, *others]
    y = fn(*inputs)
    g = px.autograd.grad(y, inputs, px.ones_like(y) * 0.7, create_graph=True)
    second = px.autograd.grad(sum((t * t).sum() for t in g), inputs, allow_unused=True)
    return [y.detach().numpy()] + [t.detach().numpy() for t in g] + \
        [None if t is None else t.numpy() for t in second]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_gelu_function_matches_unfused_to_second_order(approximate):
    x = px.tensor(np.random.default_rng(4).normal(size=(3, 5)), requires_grad=True)
    fused = _grads_and_second(
        lambda t: fused_activation.FusedGelu.apply(t, approximate, NumpyGelu()), x)
    plain = _grads_and_second(lambda t: F.gelu(t, approximate=approximate), x)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    t = px.tensor(x.detach().numpy(), requires_grad=True)          # plain backward: the kernel
    fused_activation.FusedGelu.apply(t, approximate, NumpyGelu()).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), plain[1] / 0.7, rtol=1e-10)


def test_fused_layer_norm_function_matches_unfused_to_second_order():
    from phalanx.nn.functional import normalization
    rng = np.random.default_rng(5)
    x, w, b = (px.tensor(rng.normal(size=s), requires_grad=True) for s in [(2, 3, 4), (3, 4),
                                                                           (3, 4)])

    def fused(a, w_, b_):
        return fused_normalization.FusedLayerNorm.apply(a, w_, b_, (3, 4), 1e-5,
                                                        NumpyLayerNorm(), normalization._layer_norm)
    got = _grads_and_second(fused, x, w, b)
    want = _grads_and_second(lambda a, w_, b_: F.layer_norm(a, (3, 4), w_, b_), x, w, b)
    for a, c in zip(got, want):
        if c is None:
            assert a is None or np.allclose(a, 0)
        else:
            np.testing.assert_allclose(a, c, rtol=1e-8, atol=1e-10)
    t = px.tensor(x.detach().numpy(), requires_grad=True)          # plain backward: the kernel
    fused(t, w, None).sum().backward()
    plain = px.tensor(x.detach().numpy(), requires_grad=True)
    F.layer_norm(plain, (3, 4), w, None).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), plain.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_cross_entropy_hook_with_fused_log_softmax(monkeypatch):
    class NumpyLogSoftmax:
        def softmax(self, z, log=False):
            ref = fused_loss.cross_entropy_reference(z, np.zeros(len(z), np.int64))[1]
            return z - ref[:, None]
    rng = np.random.default_rng(6)
    x, target = rng.normal(size=(7, 4)) * 3, rng.integers(0, 4, 7)
    plain = px.tensor(x, requires_grad=True)
    F.cross_entropy(plain, px.tensor(target), label_smoothing=0.1).backward()
    monkeypatch.setattr(fused_loss, "kernels_for", lambda xp: NumpyLogSoftmax())
    hooked = px.tensor(x, requires_grad=True)
    loss = F.cross_entropy(hooked, px.tensor(target), label_smoothing=0.1)
    loss.backward()
    np.testing.assert_allclose(hooked.grad.numpy(), plain.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind, kwargs", [
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01, nesterov=False)),
    ("sgd", dict(lr=0.1, momentum=0.0, weight_decay=0.01, maximize=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", dict(lr=0.01, weight_decay=0.1, maximize=True)),
])
def test_optimizer_hooks_take_the_multi_tensor_path(monkeypatch, kind, kwargs):
    start, grads_per_step = _params(7)
    cls = {"sgd": px.optim.SGD, "adam": px.optim.Adam, "adamw": px.optim.AdamW}[kind]

    def run():
        tensors = [px.nn.Parameter(px.tensor(p.copy())) for p in start]
        opt = cls(tensors, **kwargs)
        for grads in grads_per_step:
            for t, g in zip(tensors, grads):
                t.grad = px.tensor(g)
            opt.step()
        return [t.detach().numpy() for t in tensors], opt
    plain, _ = run()
    NumpyMultiTensor.calls = 0
    monkeypatch.setattr(fused_optim, "kernels_for", lambda xp: NumpyMultiTensor())
    hooked, opt = run()
    assert NumpyMultiTensor.calls == len(grads_per_step)        # one launch per step
    for a, b in zip(hooked, plain):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if kind != "sgd":
        assert all(float(s["step"]) == 3 for s in opt.state.values())


class NumpyCrossEntropy:
    def softmax(self, z, log=False):   # the unfused Function's hook (double backward uses it)
        lse = fused_loss.cross_entropy_reference(z, np.zeros(len(z), np.int64))[1]
        return z - lse[:, None] if log else np.exp(z - lse[:, None])

    def forward(self, x, target, weight, ignore_index):
        return fused_loss.cross_entropy_reference(x, target, weight, ignore_index)

    def backward(self, x, target, row_weight, lse, grad_loss):
        return fused_loss.cross_entropy_grad_reference(x, target, row_weight, lse,
                                                       np.broadcast_to(grad_loss, lse.shape))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("all_ignored", [False, True])
def test_fused_cross_entropy_function_matches_unfused(monkeypatch, reduction, weighted,
                                                      all_ignored):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(6, 5)) * 3
    target = np.full(6, -100) if all_ignored else np.array([0, 4, -100, 2, 2, 1])
    w = px.tensor(rng.uniform(0.5, 2, 5)) if weighted else None

    def run():
        t = px.tensor(x, requires_grad=True)
        loss = F.cross_entropy(t, px.tensor(target), weight=w, reduction=reduction)
        g = px.autograd.grad(loss, [t], px.ones_like(loss) * 0.3, create_graph=True)[0]
        second = px.autograd.grad((g * g).sum(), [t])[0]
        t2 = px.tensor(x, requires_grad=True)
        (F.cross_entropy(t2, px.tensor(target), weight=w, reduction=reduction) * 0.3).sum() \
            .backward()
        return [loss.detach().numpy(), g.detach().numpy(), second.numpy(), t2.grad.numpy()]
    plain = run()
    monkeypatch.setattr(fused_loss, "kernels_for", lambda xp: NumpyCrossEntropy())
    fused = run()
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_fused_cross_entropy_applies_only_where_it_can(monkeypatch):
    monkeypatch.setattr(fused_loss, "kernels_for", lambda xp: NumpyCrossEntropy())
    x = px.tensor(np.zeros((2, 3)))
    unfused = lambda i, t, w: None  # noqa: E731
    assert fused_loss.cross_entropy(x, px.tensor([0, 1]), None, -100, "mean", 0.1,
                                    unfused) is None                  # label smoothing
    assert fused_loss.cross_entropy(x, px.tensor(np.eye(2, 3)), None, -100, "mean", 0.0,
                                    unfused) is None                  # probability targets
    assert fused_loss.cross_entropy(px.tensor(np.zeros((2, 3, 4))), px.tensor(np.zeros(
        (2, 4), np.int64)), None, -100, "mean", 0.0, unfused) is None  # (N, C, d) layout
    assert fused_loss.cross_entropy(x, px.tensor([0, 1]), None, -100, "mean", 0.0,
                                    unfused) is not None


def test_multi_tensor_tables_are_reused_while_addresses_repeat():
    k = NumpyMultiTensor()
    a, b = k._device_table([1, 2, 3]), k._device_table([1, 2, 3])
    assert a is b and list(a) == [1, 2, 3]
    for i in range(k.TABLES + 1):
        k._device_table([i, -1])
    assert len(k._tables) == k.TABLES and k._device_table([1, 2, 3]) is not a


@gpu
def test_gpu_autocast_runs_layer_norm_and_attention_fused(monkeypatch):
    """Under CUDA autocast layer norm takes the fused kernel in float32 and attention the
    fused Function in float16, with PyTorch's dtypes and values."""
    import torch
    from phalanx.nn.functional import attention, normalization
    monkeypatch.setattr(attention, "_attend", None)               # never the composed forms
    monkeypatch.setattr(normalization, "_layer_norm", None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 64)).astype(np.float32)
    w = rng.uniform(0.5, 2, 64).astype(np.float32)
    px_x, px_w = (px.tensor(a, device="cuda", requires_grad=True) for a in (x, w))
    t_x, t_w = (torch.tensor(a, device="cuda", requires_grad=True) for a in (x, w))
    with px.autocast("cuda"):
        q = px_x.half().reshape(4, 16, 4, 16).transpose(1, 2)
        ours = (F.scaled_dot_product_attention(q, q, q), F.layer_norm(px_x.half(), (64,), px_w))
    with torch.autocast("cuda"):
        tq = t_x.half().reshape(4, 16, 4, 16).transpose(1, 2)
        theirs = (torch.nn.functional.scaled_dot_product_attention(tq, tq, tq),
                  torch.nn.functional.layer_norm(t_x.half(), (64,), t_w))
    for o, t in zip(ours, theirs):
        assert str(o.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_allclose(o.float().detach().cpu().numpy(),
                                   t.float().detach().cpu().numpy(), rtol=2e-3, atol=2e-3)
    sum(o.float().sum() for o in ours).backward()
    sum(t.float().sum() for t in theirs).backward()
    for p, t in ((px_x, t_x), (px_w, t_w)):
        np.testing.assert_allclose(p.grad.cpu().numpy(), t.grad.cpu().numpy(),
                                   rtol=1e-2, atol=1e-2)
