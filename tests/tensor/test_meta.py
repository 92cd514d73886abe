"""The meta device against PyTorch's: shapes and dtypes without data, a model built on it
allocating nothing, ops giving meta results of the right shape, values refused, and the
ways out (to_empty, load_state_dict(assign=True))."""
import resource
import warnings

import numpy as np
import pytest
import torch

import phalanx as px


def test_meta_tensors_print_and_behave_as_pytorchs():
    printed = []
    for lib in (px, torch):
        a = lib.randn(2, 3, device="meta")
        b = lib.zeros(4, dtype=lib.int64, device="meta")
        c = lib.ones(2, device="meta", requires_grad=True)
        printed.append([repr(t).replace("torch.", "phalanx.") for t in (a, b, c, c * 2)])
        assert a.is_meta and not lib.ones(1).is_meta and a.device == lib.device("meta")
        assert (a @ lib.randn(3, 5, device="meta")).shape == (2, 5)
        assert lib.cat([a, a]).is_meta and a.sum(1).shape == (2,)
        with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
            a.to("cpu")
        with pytest.raises(NotImplementedError):
            a.tolist()
        with pytest.raises(RuntimeError, match="cannot be called on meta tensors"):
            lib.ones(1, device="meta").item()
        assert lib.ones(2).to("meta").is_meta
        assert lib.empty_like(a).is_meta and a.new_zeros(4).is_meta
    assert printed[0] == printed[1]


def test_a_model_built_on_meta_allocates_nothing():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with px.device("meta"):
        big = px.nn.Linear(50_000, 50_000)            # 10 GB of float32 on the CPU
        assert px.get_default_device() == px.device("meta")
    assert px.get_default_device() == px.device("cpu")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert big.weight.is_meta and big.weight.requires_grad and grown_mb < 200


def test_modules_on_meta_run_and_materialise():
    for lib in (px, torch):
        with lib.device("meta"):
            net = lib.nn.Sequential(lib.nn.Conv2d(3, 8, 3), lib.nn.BatchNorm2d(8),
                                    lib.nn.ReLU(), lib.nn.Flatten(),
                                    lib.nn.Linear(8 * 6 * 6, 4))
            emb = lib.nn.Embedding(10, 3, padding_idx=0)
        out = net(lib.randn(2, 3, 8, 8, device="meta"))
        assert out.is_meta and out.shape == (2, 4) and emb.weight.is_meta
        reference = lib.nn.Linear(8 * 6 * 6, 4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net[4].load_state_dict(reference.state_dict())          # copies: a no-op
        assert net[4].weight.is_meta and "which is a no-op" in str(caught[0].message)
        net[4].load_state_dict(reference.state_dict(), assign=True)
        assert not net[4].weight.is_meta and net[4].weight is not reference.weight
        np.testing.assert_array_equal(net[4].weight.detach().numpy(),
                                      reference.weight.detach().numpy())
        net.to_empty(device="cpu")
        assert all(not p.is_meta for p in net.parameters())
        assert all(not b.is_meta for b in net.buffers())
        net[1].reset_parameters()
        assert net[1].running_var.tolist() == [1.0] * 8


def test_default_device_rules():
    with pytest.raises(NotImplementedError, match="the CPU and 'meta'"):
        px.set_default_device("cuda:0")
    px.set_default_device("meta")
    try:
        assert px.zeros(3).is_meta and px.tensor([1.0]).is_meta
        assert not px.zeros(3, device="cpu").is_meta
    finally:
        px.set_default_device(None)
    assert not px.zeros(3).is_meta
