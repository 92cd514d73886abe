"""Module, Parameter and containers: registration, traversal, state dicts (also against
PyTorch's), moves, hooks, repr."""
import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(px.ones(4))
        self.register_buffer("count", px.zeros(1))
        self.register_buffer("scratch", px.zeros(2), persistent=False)

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 2, bias=False)
        self.tied = self.head  # the same module twice: reported once

    def forward(self, x):
        return self.head(self.block(x))


def test_parameter_basics():
    t = px.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, px.Tensor)
    assert p.requires_grad and p.is_leaf
    assert np.shares_memory(p._data, t._data)
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert not isinstance(p * 2, nn.Parameter)
    assert not isinstance(p.detach(), nn.Parameter)
    assert repr(p).startswith("Parameter containing:")
    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and not np.shares_memory(q._data, p._data)
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and np.array_equal(r._data, p._data)
    assert nn.Parameter().shape == (0,)


def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["block.scale", "block.fc.weight", "block.fc.bias", "head.weight"]
    assert len(list(net.parameters())) == 4
    assert [n for n, _ in net.named_parameters(remove_duplicate=False)][-1] == "tied.weight"
    assert [n for n, _ in net.named_buffers()] == ["block.count", "block.scratch"]
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "block.act", "head"]
    assert [n for n, _ in net.block.named_parameters(prefix="b", recurse=False)] == ["b.scale"]
    assert net.get_submodule("block.fc") is net.block.fc
    assert net.get_parameter("block.fc.bias") is net.block.fc.bias
    assert net.get_buffer("block.count") is net.block.count
    with pytest.raises(AttributeError, match="no submodule `nope`"):
        net.get_submodule("block.nope")
    with pytest.raises(AttributeError, match="no parameter `nope`"):
        net.get_parameter("block.nope")
    # re-assigning and deleting
    net.block.scale = None
    assert "block.scale" not in dict(net.named_parameters())
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'scale'"):
        net.block.scale = px.ones(4)
    del net.head
    assert "head" not in dict(net.named_children())
    net.add_module("extra", nn.Identity())
    net.register_module("extra2", nn.Identity())
    assert net.extra2 is net._modules["extra2"]
    with pytest.raises(TypeError, match="is not a Module subclass"):
        net.add_module("bad", 3)
    with pytest.raises(KeyError, match="parameter name can.*contain"):
        net.register_parameter("a.b", nn.Parameter(px.ones(1)))
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing


def test_init_order_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(px.ones(1))
            super().__init__()
    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Bad()


def test_missing_forward():
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(px.ones(1))


def test_state_dict_and_load():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["block.scale", "block.count", "block.fc.weight", "block.fc.bias",
                        "head.weight", "tied.weight"]
    assert not sd["head.weight"].requires_grad
    assert net.state_dict(keep_vars=True)["head.weight"] is net.head.weight
    assert list(net.block.state_dict(prefix="p.")) == ["p.scale", "p.count", "p.fc.weight",
                                                       "p.fc.bias"]
    other = Net()
    res = other.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert str(res) == "<All keys matched successfully>"
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v._data, sd[k]._data)
    # loaded by copy, not aliasing
    assert not np.shares_memory(other.head.weight._data, net.head.weight._data)

    partial = OrderedDict((k, v) for k, v in sd.items() if k != "block.fc.bias")
    partial["block.fc.nonsense"] = px.ones(1)
    partial["ghost.weight"] = px.ones(1)
    with pytest.raises(RuntimeError) as e:
        other.load_state_dict(partial)
    msg = str(e.value)
    assert 'Missing key(s) in state_dict: "block.fc.bias"' in msg
    assert '"block.fc.nonsense"' in msg and '"ghost.weight"' in msg
    res = other.load_state_dict(partial, strict=False)
    # non-strict: reported, not raised
    assert res.missing_keys == ["block.fc.bias"]
    assert sorted(res.unexpected_keys) == ["block.fc.nonsense", "ghost.weight"]
    bad = dict(sd)
    bad["block.fc.weight"] = px.ones(3, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for block.fc.weight: copying a param "
                                           r"with shape \[3, 4\] from checkpoint, the shape in "
                                           r"current model is \[4, 3\]"):
        other.load_state_dict(bad)
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(bad, strict=False)  # shape errors are never silent


def test_load_state_dict_reports_keys_non_strict():
    lin = nn.Linear(2, 2)
    res = lin.load_state_dict({"weight": np.zeros((2, 2), np.float64), "x": 1}, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["x"]
    np.testing.assert_array_equal(lin.weight._data, 0)
    assert lin.weight.dtype == px.float32  # cast to the parameter's dtype
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "bias"'):
        lin.load_state_dict({"weight": np.zeros((2, 2))})


def test_custom_state_dict_hooks():
    class Versioned(nn.Linear):
        def _save_to_state_dict(self, destination, prefix, keep_vars):
            super()._save_to_state_dict(destination, prefix, keep_vars)
            destination[prefix + "extra"] = px.tensor([7.0])

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                                  missing_keys, unexpected_keys, error_msgs):
            self.loaded_extra = state_dict.pop(prefix + "extra", None)
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                          missing_keys, unexpected_keys, error_msgs)
    seq = nn.Sequential(Versioned(2, 2))
    sd = seq.state_dict()
    assert "0.extra" in sd
    seq2 = nn.Sequential(Versioned(2, 2))
    seq2.load_state_dict(dict(sd))
    assert seq2[0].loaded_extra.item() == 7.0


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.GELU(),
                                        torch.nn.Dropout(0.1), torch.nn.Linear(8, 3))
        self.emb = torch.nn.Embedding(10, 5, padding_idx=0)
        self.bil = torch.nn.Bilinear(5, 5, 2)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)])
        self.table = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 1)})
        self.extra = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(2))])


class PxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 3))
        self.emb = nn.Embedding(10, 5, padding_idx=0)
        self.bil = nn.Bilinear(5, 5, 2)
        self.heads = nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)])
        self.table = nn.ModuleDict({"a": nn.Linear(2, 1)})
        self.extra = nn.ParameterList([nn.Parameter(px.randn(2))])


def test_torch_state_dict_round_trip():
    tnet, pnet = TorchNet(), PxNet()
    tsd = tnet.state_dict()
    psd = pnet.state_dict()
    assert list(tsd) == list(psd)
    assert all(tuple(tsd[k].shape) == tuple(psd[k].shape) for k in tsd)
    pnet.load_state_dict({k: v.numpy() for k, v in tsd.items()})
    for k, v in pnet.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), tsd[k].numpy())
    # and back: a Phalanx state dict loads into the PyTorch model
    with px.no_grad():
        for p in pnet.parameters():
            p.mul_(0.5)
    tnet.load_state_dict({k: torch.from_numpy(np.array(v.numpy()))
                          for k, v in pnet.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    tnet.eval()
    pnet.eval()
    np.testing.assert_allclose(pnet.body(px.tensor(x)).numpy(force=True),
                               tnet.body(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_train_eval_requires_grad_zero_grad_apply():
    net = Net()
    assert net.training and net.block.fc.training
    net.eval()
    assert not net.training and not net.block.fc.training
    net.train()
    assert net.block.act.training
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_(True)
    net(px.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad._data.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "ReLU", "Block", "Linear", "Net"]


def test_moves_keep_parameter_identity():
    net = Net()
    net.block.register_buffer("steps", px.tensor([3]))
    w = net.head.weight
    net(px.randn(2, 3)).sum().backward()
    assert net.double() is net
    assert net.head.weight is w and w.dtype == px.float64 and w.grad.dtype == px.float64
    assert net.block.count.dtype == px.float64
    assert net.block.steps.dtype == px.int64  # integer buffers are not cast
    net.half()
    assert w.dtype == px.float16
    net.bfloat16()
    assert w.dtype == px.bfloat16 and net.block.steps.dtype == px.int64
    net.to(px.float32)
    assert w.dtype == px.float32 and isinstance(w, nn.Parameter)
    net.to("cpu").cpu()
    assert str(w.device) == "cpu"
    net.to(px.zeros(1, dtype=px.float64))
    assert w.dtype == px.float64
    net.float()
    with pytest.raises(TypeError, match="floating point"):
        net.to(px.int64)
    # an optimizer-style reference still sees the moved data
    assert w._data is net.state_dict(keep_vars=True)["head.weight"]._data


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape) or out + 1)
    x = px.randn(3, 2)
    out = lin(x)
    np.testing.assert_allclose(out.numpy(force=True), lin.bias.numpy(force=True)[None] + 1 +
                               np.zeros((3, 2)), rtol=1e-6)
    assert calls == [(3, 2)]
    h1.remove()
    h2.remove()
    np.testing.assert_allclose(lin(x).numpy(force=True),
                               (x @ lin.weight.T + lin.bias).numpy(force=True))
    order = []
    lin.register_forward_pre_hook(lambda m, a: order.append("b"))
    lin.register_forward_pre_hook(lambda m, a: order.append("a"), prepend=True)
    lin.register_forward_hook(lambda m, a, k, o: order.append(sorted(k)), with_kwargs=True)
    lin(x)
    assert order == ["a", "b", []]


def test_repr_tree():
    def build(lib, od):
        return lib.Sequential(od([
            ("fc", lib.Linear(3, 4)), ("act", lib.LeakyReLU(0.2)),
            ("inner", lib.Sequential(lib.Dropout(0.5), lib.Linear(4, 1, bias=False),
                                     lib.GELU(approximate="tanh"))),
            ("emb", lib.Embedding(5, 2, padding_idx=1)), ("flat", lib.Flatten()),
            ("one", lib.ParameterList([lib.Parameter(lib_ones(lib, 2, 3))])),
            ("two", lib.ParameterList([lib.Parameter(lib_ones(lib, 2, 3)),
                                       lib.Parameter(lib_ones(lib, 1))])),
            ("softmax", lib.Softmax(dim=1)), ("loss", lib.CrossEntropyLoss())]))

    def lib_ones(lib, *shape):
        return torch.ones(*shape) if lib is torch.nn else px.ones(*shape)
    expected = repr(build(torch.nn, OrderedDict)).replace("torch.", "phalanx.")
    assert repr(build(nn, OrderedDict)) == expected
    assert "  (inner): Sequential(\n    (0): Dropout(p=0.5, inplace=False)" in expected


def test_sequential():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    assert list(sub._modules) == ["1", "2"]  # slicing keeps keys, as in PyTorch
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight",
                                                         "2.bias"]
    x = px.randn(4, 2)
    np.testing.assert_allclose(seq(x).numpy(force=True),
                               c(b(a(x))).sigmoid().numpy(force=True), rtol=1e-6)
    del seq[3]
    assert len(seq) == 3
    seq.insert(0, nn.Identity())
    assert isinstance(seq[0], nn.Identity) and seq[1] is a
    seq[0] = nn.Tanh()
    assert isinstance(seq[0], nn.Tanh)
    with pytest.raises(IndexError, match="out of range"):
        seq[10]
    named = nn.Sequential(OrderedDict([("first", a), ("second", c)]))
    assert named.first is a and list(named.state_dict())[0] == "first.weight"


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    assert len(ml) == 3
    ml.append(nn.ReLU())
    ml.extend([nn.Tanh()])
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "Linear", "Linear", "ReLU",
                                              "Tanh"]
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3", "4"]
    assert len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"a": nn.Linear(1, 2), "b": nn.ReLU()})
    md["c"] = nn.Tanh()
    assert list(md.keys()) == ["a", "b", "c"] and "a" in md and len(md) == 3
    assert md.pop("b") is not None and list(md) == ["a", "c"]
    assert list(md.state_dict()) == ["a.weight", "a.bias"]


def test_parameter_list_and_dict():
    pl = nn.ParameterList([px.ones(2), nn.Parameter(px.zeros(3))])
    assert all(isinstance(p, nn.Parameter) for p in pl)
    pl.append(px.ones(1))
    assert len(pl) == 3 and list(pl.state_dict()) == ["0", "1", "2"]
    assert len(list(pl.parameters())) == 3
    pd = nn.ParameterDict({"w": px.ones(2)})
    pd["b"] = nn.Parameter(px.zeros(1))
    assert list(pd.keys()) == ["w", "b"] and isinstance(pd["w"], nn.Parameter)
    assert list(dict(pd.named_parameters())) == ["w", "b"]
    del pd["w"]
    assert list(pd.state_dict()) == ["b"]


def test_deepcopy_module():
    net = Net()
    clone = copy.deepcopy(net)
    assert list(clone.state_dict()) == list(net.state_dict())
    assert clone.head.weight is not net.head.weight
    assert clone.tied is clone.head
    np.testing.assert_array_equal(clone.head.weight._data, net.head.weight._data)
