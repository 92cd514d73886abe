"""Creation functions against PyTorch, and the seeded random generator."""
import numpy as np
import pytest
import torch

import phalanx as px


def _same(p, t):
    assert tuple(p.shape) == tuple(t.shape)
    assert p.dtype.name == str(t.dtype).replace("torch.", "")
    np.testing.assert_allclose(p.numpy(), t.numpy(), rtol=1e-6)


@pytest.mark.parametrize("data", [1, 2.5, True, [1, 2], [1.0, 2], [[True, False]], [[1, 2], [3, 4]],
                                  [], np.arange(3, dtype=np.int32), np.ones((2, 2), np.float64),
                                  np.float32(3.0)])
def test_tensor_infers_dtype_like_torch(data):
    _same(px.tensor(data), torch.tensor(data))


@pytest.mark.parametrize("dtype", ["float64", "int32", "bool", "uint8", "float16"])
def test_tensor_with_dtype(dtype):
    _same(px.tensor([0, 1, 2], dtype=getattr(px, dtype)),
          torch.tensor([0, 1, 2], dtype=getattr(torch, dtype)))


def test_tensor_copies_and_as_tensor_shares():
    a = np.zeros(3, np.float32)
    t, s = px.tensor(a), px.as_tensor(a)
    a[0] = 5
    assert t[0].item() == 0 and s[0].item() == 5
    assert px.as_tensor(s) is s
    assert px.as_tensor(a, dtype=px.float64).dtype is px.float64
    assert px.tensor(px.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert px.tensor([px.tensor(1.0), px.tensor(2.0)]).tolist() == [1.0, 2.0]


def test_tensor_rejects_ragged_data():
    with pytest.raises((TypeError, ValueError), match="ragged|same length|inhomogeneous"):
        px.tensor([[1, 2], [3]])


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [((),), (0,), (2, 3), ((2, 3),), ([4],)])
def test_filled_factories(name, size):
    p, t = getattr(px, name)(*size), getattr(torch, name)(*size)
    assert tuple(p.shape) == tuple(t.shape) and p.dtype is px.float32
    if name != "empty":
        _same(p, t)
    q = getattr(px, name)(*size, dtype=px.int64, requires_grad=False)
    assert q.dtype is px.int64
    like = getattr(px, name + "_like")(q)
    assert like.shape == q.shape and like.dtype is px.int64
    assert getattr(px, name + "_like")(q, dtype=px.float64).dtype is px.float64


@pytest.mark.parametrize("fill", [2, 2.5, True])
def test_full(fill):
    _same(px.full((2, 3), fill), torch.full((2, 3), fill))
    _same(px.full_like(px.zeros(2), fill), torch.full_like(torch.zeros(2), fill))
    _same(px.full([2], fill, dtype=px.float64), torch.full([2], fill, dtype=torch.float64))


@pytest.mark.parametrize("args", [(5,), (1, 7, 2), (0, 1, 0.25), (5.0,), (-3, 3), (10, 0, -3)])
def test_arange(args):
    _same(px.arange(*args), torch.arange(*args))


def test_arange_dtype_and_grad():
    x = px.arange(4, dtype=px.float64, requires_grad=True)
    assert x.dtype is px.float64 and x.requires_grad


@pytest.mark.parametrize("args", [(0, 1, 5), (-2, 2, 1), (3, 1, 4), (0, 1, 0)])
def test_linspace(args):
    _same(px.linspace(*args), torch.linspace(*args))
    _same(px.linspace(*args, dtype=px.float64), torch.linspace(*args, dtype=torch.float64))


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (0,)])
def test_eye(args):
    _same(px.eye(*args), torch.eye(*args))
    assert px.eye(*args, dtype=px.int64).dtype is px.int64


# ---- random ---------------------------------------------------------------------------------
RANDOM = {
    "rand": lambda g: px.rand(3, 4, generator=g),
    "randn": lambda g: px.randn((2, 5), generator=g),
    "randint": lambda g: px.randint(0, 10, (6,), generator=g),
    "randperm": lambda g: px.randperm(8, generator=g),
    "normal": lambda g: px.normal(1.0, 2.0, (5,), generator=g),
    "normal_tensor": lambda g: px.normal(px.zeros(4), px.ones(4) * 3, generator=g),
    "bernoulli": lambda g: px.bernoulli(px.full((20,), 0.5), generator=g),
}


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_stream(name):
    fn = RANDOM[name]
    a = [fn(px.Generator().manual_seed(7)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    g = px.Generator().manual_seed(7)
    first, second = fn(g).tolist(), fn(g).tolist()
    assert first == a[0] and second != first  # the stream moves on
    assert fn(px.Generator().manual_seed(8)).tolist() != first


@pytest.mark.parametrize("name", RANDOM)
def test_default_generator_is_seeded_by_manual_seed(name):
    fn = RANDOM[name]
    px.manual_seed(123)
    a = fn(None).tolist()
    px.manual_seed(123)
    assert fn(None).tolist() == a


def test_state_round_trip():
    g = px.Generator().manual_seed(3)
    px.rand(2, generator=g)
    state = g.get_state()
    assert state.dtype is px.uint8
    a = px.randn(5, generator=g).tolist()
    g.set_state(state)
    assert px.randn(5, generator=g).tolist() == a
    assert g.initial_seed() == 3
    px.manual_seed(11)
    s = px.get_rng_state()
    b = px.rand(4).tolist()
    px.set_rng_state(s)
    assert px.rand(4).tolist() == b
    with pytest.raises(ValueError, match="48 bytes"):
        g.set_state(px.zeros(3, dtype=px.uint8))


def test_random_values_and_dtypes():
    px.manual_seed(0)
    r = px.rand(1000)
    assert r.dtype is px.float32 and 0 <= r.min().item() and r.max().item() < 1
    n = px.randn(4000, dtype=px.float64)
    assert n.dtype is px.float64 and abs(n.mean().item()) < 0.1 and abs(n.std().item() - 1) < 0.1
    i = px.randint(3, 5, (100,))
    assert i.dtype is px.int64 and set(i.tolist()) == {3, 4}
    assert sorted(px.randperm(6).tolist()) == list(range(6))
    b = px.bernoulli(px.tensor([0.0, 1.0]))
    assert b.tolist() == [0.0, 1.0]
    nt = px.normal(px.tensor([0.0, 100.0]), px.tensor([1e-6, 1e-6]))
    np.testing.assert_allclose(nt.numpy(), [0, 100], atol=1e-3)
    assert px.randn(2, 3, requires_grad=True).requires_grad
    assert px.rand_like(px.zeros(2, dtype=px.float64)).dtype is px.float64
    with pytest.raises(TypeError, match="size"):
        px.randint(5)


def test_inplace_random_fills_bump_version():
    t = px.zeros(100)
    v = t._version[0]
    t.uniform_(2, 3)
    assert t._version[0] > v and 2 <= t.min().item() and t.max().item() <= 3
    t.normal_(0, 1)
    assert t.std().item() > 0.5
