"""examples/gcn_karate.py: a two-layer GCN, its message passing written on index_select and
scatter_add, classifies at least 23 of the karate club's 26 unlabelled members; its layer
equals the dense formula D^-1/2 (A + I) D^-1/2 X W + b in value and gradient; two ranks train
data-parallel under mpiexec and resume exactly."""
import re

import numpy as np
import pytest

import phalanx as px

nx = pytest.importorskip("networkx")


@pytest.mark.timeout(60)
def test_classifies_the_club_members(examples):
    out = examples.python("gcn_karate.py")
    assert "34 members, 78 friendships; 8 labelled for training, 26 to classify" in out, out
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", out).group(1)) / 100
    assert accuracy >= 0.88, out  # 23 of 26 or better; one club holds 56% of the test members


def test_message_passing_equals_the_dense_graph_convolution(examples):
    example = examples.module("gcn_karate.py")
    edge_index, *_ = example.load_karate(4, 0)
    px.manual_seed(0)
    layer = example.GCNConv(34, 5)
    layer.bias.data = px.randn(5)
    x = px.randn(34, 34, requires_grad=True)
    out = layer(x, px.tensor(edge_index))
    out.square().sum().backward()

    adjacency = nx.to_numpy_array(nx.karate_club_graph(), weight=None) + np.eye(34)
    d = 1 / np.sqrt(adjacency.sum(1))
    propagate = d[:, None] * adjacency * d[None, :]
    w, b = layer.linear.weight.detach().numpy().T, layer.bias.detach().numpy()
    expected = propagate @ x.detach().numpy() @ w + b
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    grad_x = propagate.T @ (2 * expected) @ w.T
    np.testing.assert_allclose(x.grad.numpy(), grad_x, rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(120)
def test_two_ranks_train_data_parallel_under_mpi_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "mpiexec", "gcn_karate.py", "--epochs", 20, "--report-every", 10, stop_after=10)
    for out in (first, second):
        assert "2 rank(s), backend mpi" in out and "weights identical on all 2 rank(s)" in out
    assert "epoch 10:" not in second and "epoch 20: loss" in second, second
    # rank 0 alone logged each of the three runs to TensorBoard, beside the checkpoints
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    logs = examples.folder / "runs" / "gcn_karate"
    assert len(list(logs.glob("events.out.tfevents.*"))) == 3
    acc = ea.EventAccumulator(str(logs))
    acc.Reload()
    assert {"loss", "test_accuracy"} <= set(acc.Tags()["scalars"])
    assert max(e.step for e in acc.Scalars("test_accuracy")) == 20
