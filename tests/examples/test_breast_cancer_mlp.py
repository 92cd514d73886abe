"""examples/breast_cancer_mlp.py: an MLP on scikit-learn's breast cancer data, standardised
with the training part's statistics only, stops early on the validation loss and classifies at
least 95% of the test tumours; two ranks stop at the same epoch under `phalanx run` and resume
exactly."""
import re

import numpy as np
import pytest

import phalanx as px

pytest.importorskip("sklearn")


@pytest.mark.timeout(60)
def test_stops_early_and_classifies_the_test_tumours(examples):
    out = examples.python("breast_cancer_mlp.py")
    assert "341 train / 114 validation / 114 test tumours" in out, out
    stopped, best = map(int, re.search(r"early stop after epoch (\d+): no better validation "
                                       r"loss for \d+ epochs\n.*of epoch (\d+)", out).groups())
    assert stopped == best + 20 and stopped < 300, out  # patience 20, well before the limit
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", out).group(1)) / 100
    assert accuracy >= 0.95, out
    state = px.load(examples.folder / "breast_cancer_mlp.ckpt")
    assert state["best_epoch"] == best and state["epoch"] == stopped


def test_standardisation_uses_the_training_part_only(examples):
    example = examples.module("breast_cancer_mlp.py")
    train, val, test, scaler = example.load_breast_cancer_splits(0)
    mean, std = scaler["mean"], scaler["std"]
    assert len(scaler["feature_names"]) == 30 and scaler["feature_names"][0] == "mean radius"
    x_train = train.tensors[0].numpy()
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x_train.std(0), 1, atol=1e-3)
    assert not np.allclose(val.tensors[0].numpy().mean(0), 0, atol=1e-3)
    from sklearn.datasets import load_breast_cancer
    features, _ = load_breast_cancer(return_X_y=True)
    recovered = test.tensors[0].numpy() * std + mean   # test rows are raw rows, scaled
    assert all(np.isclose(features, row, rtol=1e-4).all(1).any() for row in recovered)


@pytest.mark.timeout(120)
def test_two_ranks_train_data_parallel_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "launcher", "breast_cancer_mlp.py", "--epochs", 4, "--report-every", 1, stop_after=2)
    for out in (first, second):
        assert "[rank 0]: 2 rank(s), backend zmq" in out, out
        assert "[rank 0]: weights identical on all 2 rank(s)" in out, out
    assert "epoch 2:" not in second and "[rank 0]: epoch 4: validation loss" in second, second
