"""examples/dcgan_digits.py: a DCGAN on the 8x8 digits generates images that a digit
classifier reads as digits of most classes at the test's settings, written as a PNG; two ranks
train both networks data-parallel under mpiexec and resume exactly."""
import re

import numpy as np
import pytest

pytest.importorskip("sklearn")
PIL = pytest.importorskip("PIL.Image")


@pytest.mark.timeout(150)
def test_generates_digits_a_classifier_recognises(examples):
    out = examples.python("dcgan_digits.py", "--epochs", 30, "--image", "gan.png")
    score, confidence, classes = re.search(
        r"final sample score: ([\d.]+) \(confidence (\d+)%, (\d+) classes\)", out).groups()
    # random noise scores about 1 with one class; the real test digits score 6.3 at 87%
    assert float(score) >= 3.0 and int(confidence) >= 55 and int(classes) >= 8, out
    scores = [float(s) for s in re.findall(r"score ([\d.]+) \(", out)]
    assert len(scores) == 30 and scores[-1] > scores[0] + 1.5, out  # it learned
    with PIL.open(examples.folder / "gan.png") as image:
        assert image.format == "PNG" and image.size == ((10 * 9 + 1) * 4, (10 * 9 + 1) * 4)
        assert np.asarray(image).std() > 30


@pytest.mark.timeout(150)
def test_two_ranks_train_data_parallel_under_mpi_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "mpiexec", "dcgan_digits.py", "--epochs", 2, "--image", "g.png")
    for out in (first, second):
        assert "2 rank(s), backend mpi" in out, out
        assert "weights identical on all 2 rank(s)" in out, out
        assert len(re.findall(r"^epoch \d+:", out, flags=re.M)) == 1, out  # rank 0 reports
    assert "epoch 1:" not in second and "epoch 2: discriminator loss" in second, second
