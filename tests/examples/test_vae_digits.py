"""examples/vae_digits.py: a VAE on the 8x8 digits beats the mean-digit baseline on test data
at the test's settings and writes a PNG of reconstructions and samples that a digit classifier
reads as digits; two ranks train data-parallel under `phalanx run` and resume exactly."""
import re

import numpy as np
import pytest

import phalanx as px

pytest.importorskip("sklearn")
PIL = pytest.importorskip("PIL.Image")


@pytest.mark.timeout(120)
def test_beats_the_mean_digit_and_writes_a_png_of_digits(examples):
    out = examples.python("vae_digits.py", "--epochs", 30, "--image", "vae.png")
    loss = float(re.search(r"final test loss: ([\d.]+) nats", out).group(1))
    assert loss < 26.0, out  # the mean digit scores 27.1 nats per image; the floor is 13.6
    confidence, classes = re.search(r"samples judged (\d+)% confident on average by a digit "
                                    r"classifier, covering (\d+) of 10", out).groups()
    assert int(confidence) >= 40 and int(classes) >= 8, out  # chance: 10% and ~1 class
    with PIL.open(examples.folder / "vae.png") as image:
        assert image.format == "PNG" and image.mode == "L"
        # 10 x 10 tiles of 8x8 pixels with a 1-pixel gap, drawn 4 times larger
        assert image.size == ((10 * 9 + 1) * 4, (10 * 9 + 1) * 4)
        pixels = np.asarray(image)
    assert pixels.std() > 30  # strokes on a dark ground, not a blank image
    assert px.load(examples.folder / "vae_digits.ckpt")["test_loss"] == pytest.approx(loss,
                                                                                      abs=0.01)


def test_the_loss_is_the_negative_elbo(examples):
    example = examples.module("vae_digits.py")
    x = px.rand(3, 1, 8, 8)
    logits, mu, logvar = px.randn(3, 1, 8, 8), px.randn(3, 10), px.randn(3, 10)
    p = 1 / (1 + np.exp(-logits.numpy()))
    bce = -(x.numpy() * np.log(p) + (1 - x.numpy()) * np.log(1 - p)).sum()
    kl = 0.5 * (mu.numpy() ** 2 + np.exp(logvar.numpy()) - 1 - logvar.numpy()).sum()
    assert example.negative_elbo(x, logits, mu, logvar).item() == pytest.approx(bce + kl,
                                                                                rel=1e-5)


@pytest.mark.timeout(120)
def test_two_ranks_train_data_parallel_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "launcher", "vae_digits.py", "--epochs", 2, "--image", "v.png")
    for out in (first, second):
        assert "[rank 0]: 2 rank(s), backend zmq" in out, out
        assert "[rank 0]: weights identical on all 2 rank(s)" in out, out
        assert "[rank 1]: epoch" not in out
    assert "epoch 1:" not in second and "[rank 0]: epoch 2: train loss" in second, second
    assert (examples.folder / "v.png").exists()
