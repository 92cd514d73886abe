"""Module backward hooks, state-dict hooks, extra state and the smaller Module methods, against
PyTorch where it can say."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn


def pair(make_px, make_torch, seed=0):
    """The same layer in both libraries (PyTorch's weights copied)."""
    t = make_torch()
    p = make_px()
    p.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return p, t


def arrays(values):
    return [None if v is None else (v.detach().numpy() if hasattr(v, "detach") else v)
            for v in values]


def same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(arrays(ours), arrays(theirs)):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def record(log, replace=None):
    def hook(module, grad_input, grad_output):
        log.append((grad_input, grad_output))
        return replace(grad_input) if replace else None
    return hook


@pytest.mark.parametrize("replace", [None, "double"])
def test_full_backward_hook_sees_and_replaces_what_pytorch_does(replace):
    p, t = pair(lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3))
    change = None if replace is None else (lambda gi: tuple(None if g is None else g * 2
                                                            for g in gi))
    logs = {}
    for lib, mod, make in (("px", p, px.tensor), ("torch", t, torch.tensor)):
        logs[lib] = []
        mod.register_full_backward_hook(record(logs[lib], change))
        x = make(np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32),
                 requires_grad=True)
        (mod(x) ** 2).sum().backward()
        logs[lib].append(x.grad)
    (gi_p, go_p), xg_p = logs["px"][0], logs["px"][1]
    (gi_t, go_t), xg_t = logs["torch"][0], logs["torch"][1]
    same(gi_p, gi_t)
    same(go_p, go_t)
    same([xg_p], [xg_t])                 # doubled where the hook doubled it


def test_backward_pre_hook_replaces_grad_output():
    p, t = pair(lambda: nn.Linear(3, 2), lambda: torch.nn.Linear(3, 2))
    grads = {}
    for lib, mod, make in (("px", p, px.tensor), ("torch", t, torch.tensor)):
        seen = []
        mod.register_full_backward_pre_hook(lambda m, go: (go[0] * 3,))
        mod.register_full_backward_hook(lambda m, gi, go: seen.append(go))
        x = make(np.ones((2, 3), np.float32), requires_grad=True)
        mod(x).sum().backward()
        grads[lib] = (x.grad, mod.weight.grad, seen[0][0])
    same(grads["px"], grads["torch"])


class TwoInTwoOut(nn.Module):
    def forward(self, x, scale, y):
        return x * scale + y, (x * y).sum()


class TorchTwoInTwoOut(torch.nn.Module):
    def forward(self, x, scale, y):
        return x * scale + y, (x * y).sum()


def test_grad_tuples_have_one_entry_per_argument_and_output():
    """As in PyTorch: None for a non-tensor argument and an output that got no gradient,
    zeros for a tensor argument that needs none."""
    results = {}
    for lib, mod, make in (("px", TwoInTwoOut(), px.tensor),
                           ("torch", TorchTwoInTwoOut(), torch.tensor)):
        log = []
        mod.register_full_backward_hook(record(log))
        x = make(np.arange(3.0), requires_grad=True)
        y = make(np.ones(3))
        a, b = mod(x, 2.0, y)
        a.sum().backward()
        results[lib] = log[0]
    (gi_p, go_p), (gi_t, go_t) = results["px"], results["torch"]
    assert len(gi_p) == 3 and gi_p[1] is None and not gi_p[2].numpy().any()
    assert len(go_p) == 2 and go_p[1] is None
    same(gi_p, gi_t)
    same(go_p, go_t)


def test_without_inputs_needing_gradients_the_hook_fires_at_the_outputs():
    lin = nn.Linear(2, 2)
    log = []
    lin.register_full_backward_hook(record(log))
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        lin(px.ones(3, 2)).sum().backward()
    assert log[0][0] == (None,) and log[0][1][0].shape == (3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: (px.ones(3, 2),))
    with pytest.raises(RuntimeError, match="should always return None"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin(px.ones(3, 2)).sum().backward()


def test_hooks_are_removable_and_silent_without_grad():
    lin = nn.Linear(2, 2)
    log = []
    handle = lin.register_full_backward_hook(record(log))
    x = px.ones(1, 2, requires_grad=True)
    with px.no_grad():
        lin(x)
    lin(x).sum().backward()
    handle.remove()
    lin(x).sum().backward()
    assert len(log) == 1
    with pytest.raises(RuntimeError, match="wrong number|invalid number"):
        lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
        lin(x).sum().backward()


def test_hooks_inside_a_network_with_in_place_relu():
    """A hooked block between in-place ReLUs (which PyTorch refuses on a hooked module's
    inputs and outputs: it compares with out-of-place ones): the gradients are right."""
    def build(lib, inplace):
        return lib.Sequential(lib.Linear(4, 4), lib.ReLU(inplace=inplace), lib.Linear(4, 4),
                              lib.ReLU(inplace=inplace), lib.Linear(4, 1))
    p, t = pair(lambda: build(nn, True), lambda: build(torch.nn, False))
    for mod in (p, t):
        mod[2].register_full_backward_hook(lambda m, gi, go: (gi[0] * 0.5,))
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    p(px.tensor(x)).sum().backward()
    t(torch.tensor(x)).sum().backward()
    same([q.grad for q in p.parameters()], [q.grad for q in t.parameters()])


def test_deprecated_backward_hook_as_pytorchs():
    """register_backward_hook runs on the node of the module's last operation: its grad_input
    is that op's (here the ReLU's), it can replace them, and PyTorch's warning says so."""
    results = []
    for lib in (px, torch):
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Linear(3, 2), lib.nn.ReLU())
        seen = []
        model.register_backward_hook(lambda m, gi, go: seen.append(
            (m is model, [None if g is None else tuple(g.shape) for g in gi],
             [tuple(g.shape) for g in go])))
        x = lib.ones(4, 3, requires_grad=True)
        with pytest.warns(FutureWarning, match="non-full backward hook when the forward "
                                               "contains multiple autograd Nodes"):
            out = model(x)
        out.sum().backward()
        zeroing = lib.nn.Linear(3, 2)
        handle = zeroing.register_backward_hook(
            lambda m, gi, go: tuple(None if g is None else g * 0 for g in gi))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            y = lib.ones(4, 3, requires_grad=True)
            zeroing(y).sum().backward()
            assert float(y.grad.abs().sum()) == 0.0
            handle.remove()
            y.grad = None
            zeroing(y).sum().backward()
            assert float(y.grad.abs().sum()) > 0
        with pytest.raises(RuntimeError, match="Cannot use both regular backward hooks and "
                                               "full backward hooks"):
            model.register_full_backward_hook(lambda *a: None)
        results.append(seen)
    assert results[0] == results[1] == [(True, [(4, 2)], [(4, 2)])]


def test_node_hooks_see_and_replace_the_input_gradients():
    for lib in (px, torch):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = a * 3
        seen = []

        def hook(grad_inputs, grad_outputs):
            seen.append((grad_inputs[0].tolist(), grad_outputs[0].tolist()))
            return (grad_inputs[0] * 10,) + tuple(grad_inputs[1:])
        handle = b.grad_fn.register_hook(hook)
        b.sum().backward()
        assert seen == [([3.0, 3.0], [1.0, 1.0])] and a.grad.tolist() == [30.0, 30.0]
        handle.remove()


def test_state_dict_hooks():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    calls = []
    net[0].register_state_dict_pre_hook(lambda m, prefix, keep: calls.append(("pre", prefix)))

    def post(m, sd, prefix, meta):
        calls.append(("post", prefix, meta["version"]))
        sd[prefix + "note"] = px.tensor([1.0])
    net[0].register_state_dict_post_hook(post)
    sd = net.state_dict()
    assert calls == [("pre", "0."), ("post", "0.", 1)] and "0.note" in sd
    assert sd._metadata[""] == {"version": 1} and "0" in sd._metadata
    net[0].register_state_dict_post_hook(lambda *a: {})
    with pytest.raises(RuntimeError, match="must return None"):
        net.state_dict()


def test_load_state_dict_hooks_rename_and_forgive():
    old = {"0.w": np.ones((3, 2), np.float32), "0.bias": np.zeros(3, np.float32),
           "1.weight": np.ones((1, 3), np.float32)}
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))

    def rename(m, sd, prefix, meta, strict, missing, unexpected, errors):
        if prefix + "w" in sd:
            sd[prefix + "weight"] = sd.pop(prefix + "w")
    net[0].register_load_state_dict_pre_hook(rename)

    def forgive(m, keys):
        keys.missing_keys[:] = [k for k in keys.missing_keys if k != "1.bias"]
    net.register_load_state_dict_post_hook(forgive)
    result = net.load_state_dict(old)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(net[0].weight.detach().numpy(), 1.0)


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.steps = 0

    def get_extra_state(self):
        return {"steps": self.steps}

    def set_extra_state(self, state):
        self.steps = state["steps"]


def test_extra_state_round_trip_and_strictness():
    a = Counter()
    a.steps = 7
    sd = a.state_dict()
    assert sd["_extra_state"] == {"steps": 7}
    b = Counter()
    b.load_state_dict(sd)
    assert b.steps == 7
    del sd["_extra_state"]
    with pytest.raises(RuntimeError, match="Missing key.*_extra_state"):
        b.load_state_dict(sd)
    with pytest.raises(RuntimeError, match="Unexpected key.*_extra_state"):
        nn.Linear(1, 1).load_state_dict(dict(nn.Linear(1, 1).state_dict(), _extra_state=1))


def test_set_submodule_to_empty_compile_and_devices():
    net = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.ReLU())
    net.set_submodule("0.0", nn.Linear(2, 5))
    assert net[0][0].out_features == 5
    net.set_submodule("0.extra", nn.Tanh())
    with pytest.raises(AttributeError, match="has no attribute `other`"):
        net.set_submodule("0.other", nn.Tanh(), strict=True)
    with pytest.raises(AttributeError, match="no submodule"):
        net.set_submodule("9.x", nn.Tanh())
    weight = net[0][0].weight
    assert net.to_empty(device="cpu") is net and net[0][0].weight is weight
    assert net[0][0].weight.shape == (5, 2)
    lin = nn.Linear(2, 2)
    assert lin.compile(mode="max-autotune") is None and lin(px.ones(1, 2)).shape == (1, 2)
    with pytest.raises(RuntimeError, match="unrecognized mode"):
        lin.compile(mode="fastest")
    with pytest.raises(RuntimeError, match="no xpu backend"):
        lin.xpu()
    assert nn.Module.call_super_init is False and nn.Module.dump_patches is False


def test_global_module_hooks_run_for_every_module_first():
    from phalanx.nn.modules import module as M
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    order = []
    net[0].register_forward_hook(lambda m, a, o: order.append(("own", type(m).__name__)))
    handles = [
        M.register_module_forward_pre_hook(lambda m, a: order.append(("pre", type(m).__name__))),
        M.register_module_forward_hook(lambda m, a, o: order.append(("post", type(m).__name__))),
        M.register_module_full_backward_hook(
            lambda m, gi, go: order.append(("back", type(m).__name__))),
    ]
    try:
        net(px.ones(1, 2, requires_grad=True)).sum().backward()
    finally:
        for h in handles:
            h.remove()
    assert order[:6] == [("pre", "Sequential"), ("pre", "Linear"), ("post", "Linear"),
                         ("own", "Linear"), ("pre", "Tanh"), ("post", "Tanh")]
    # each when its inputs' gradients are known: innermost last module first, as in PyTorch
    assert [o for o in order if o[0] == "back"] == [("back", "Tanh"), ("back", "Linear"),
                                                    ("back", "Sequential")]
    order.clear()
    net(px.ones(1, 2))
    assert order == [("own", "Linear")]                  # removed


def test_global_registration_hooks_may_replace_what_is_registered():
    from phalanx.nn.modules import module as M
    seen = []
    handles = [
        M.register_module_parameter_registration_hook(
            lambda m, name, p: seen.append(("param", name)) or nn.Parameter(px.zeros(p.shape))),
        M.register_module_buffer_registration_hook(lambda m, name, b: seen.append(("buf", name))),
        M.register_module_module_registration_hook(lambda m, name, s: seen.append(("mod", name))),
    ]
    try:
        bn = nn.BatchNorm1d(2)
        seq = nn.Sequential(bn)
        seq.extra = nn.ReLU()
        seq.w = nn.Parameter(px.ones(2))
    finally:
        for h in handles:
            h.remove()
    assert ("param", "weight") in seen and ("buf", "running_mean") in seen
    assert ("mod", "0") in seen and ("mod", "extra") in seen
    assert not seq.w.detach().numpy().any()              # replaced by the hook's zeros
    with pytest.raises(NotImplementedError, match="full_backward_hook"):
        M.register_module_backward_hook(lambda *a: None)
