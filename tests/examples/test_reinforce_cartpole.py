"""examples/reinforce_cartpole.py: REINFORCE with a baseline solves CartPole-v1 (the greedy
policy averages at least 475 over 100 episodes) at the test's settings; two ranks play their
own episodes and average gradients under `phalanx run`, and resume exactly."""
import re

import numpy as np
import pytest

pytest.importorskip("gymnasium")


@pytest.mark.timeout(150)
def test_solves_cartpole(examples):
    out = examples.python("reinforce_cartpole.py", "--epochs", 60)
    returns = [float(r) for r in re.findall(r"mean return ([\d.]+)", out)]
    assert len(returns) == 12 and returns[0] < 60, out  # a random policy lasts ~20 steps
    score = float(re.search(r"average return ([\d.]+) over 100 episodes", out).group(1))
    assert score >= 475 and "solved" in out, out


def test_returns_to_go_discount_the_future(examples):
    example = examples.module("reinforce_cartpole.py")
    got = example.returns_to_go(np.ones(3, np.float32), 0.5)
    np.testing.assert_allclose(got, [1 + 0.5 + 0.25, 1 + 0.5, 1])


@pytest.mark.timeout(120)
def test_two_ranks_play_in_parallel_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "launcher", "reinforce_cartpole.py", "--epochs", 4, "--episodes", 2,
        "--report-every", 2, "--eval-episodes", 4, stop_after=2)
    for out in (first, second):
        assert "[rank 0]: 2 rank(s), backend zmq" in out, out
        assert "2 episodes per rank and step, 4 per step in all" in out, out
        assert "[rank 0]: weights identical on all 2 rank(s)" in out, out
        assert "over the last 8 episodes" in out, out  # 2 epochs x 2 ranks x 2 episodes
    assert "epoch 2:" not in second and "[rank 0]: epoch 4: mean return" in second, second
