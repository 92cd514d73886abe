"""examples/transformer_lm.py: a character-level GPT on 1.9 MB of the King James Bible gets
well below the letter-frequency perplexity at the test's settings and prints a sample; its
attention is causal and its output layer tied to the embedding; two ranks train
data-parallel under `phalanx run` and resume exactly."""
import math
import re

import numpy as np
import pytest

import phalanx as px

SMALL = ("--dim", 64, "--layers", 2, "--lr", 6e-3, "--warmup", 30)


def test_the_corpus_is_over_a_megabyte_of_plain_english(examples):
    example = examples.module("transformer_lm.py")
    with open(example.CORPUS, encoding="utf-8") as f:
        text = f.read()
    assert len(text.encode()) > 1_000_000
    assert text.startswith("Genesis 1\nIn the beginning God created the heaven and the earth.")
    vocab = example.CharVocabulary(text)
    assert len(vocab) < 100 and vocab.decode(vocab.encode("And God said")) == "And God said"


def test_attention_is_causal_and_the_output_layer_is_the_embedding(examples):
    example = examples.module("transformer_lm.py")
    px.manual_seed(0)
    model = example.GPT(vocab_size=20, block=16, dim=32, layers=2, heads=4)
    assert model.head.weight is model.tokens.weight
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for name, p in model.named_parameters() if name != "head.weight")
    ids = px.randint(0, 20, (2, 16))
    changed = ids.clone()
    changed[:, 10] = (ids[:, 10] + 1) % 20
    with px.no_grad():
        before, after = model(ids).numpy(), model(changed).numpy()
    np.testing.assert_array_equal(before[:, :10], after[:, :10])  # the past cannot see it
    assert not np.allclose(before[:, 10:], after[:, 10:])
    with pytest.raises(ValueError, match="longer than the context of 16"):
        model(px.zeros(1, 17, dtype=px.int64))


@pytest.mark.timeout(150)
def test_reaches_a_perplexity_well_below_letter_frequencies_and_samples(examples):
    out = examples.python("transformer_lm.py", "--epochs", 4, "--epoch-steps", 50, *SMALL)
    perplexity = float(re.search(r"final validation perplexity: ([\d.]+)", out).group(1))
    # predicting from letter frequencies alone scores 20.6 on this text
    assert perplexity < 10, out
    sample = out.split("sample:\n", 1)[1]
    assert sample.startswith("And God said") and len(sample) > 300, out
    state = px.load(examples.folder / "transformer_lm.ckpt")
    assert math.exp(state["validation_loss"]) == pytest.approx(perplexity, abs=0.01)
    assert "head.weight" in state["model"]


@pytest.mark.timeout(150)
def test_two_ranks_train_data_parallel_and_resume_exactly(examples):
    first, second = examples.resume_matches_uninterrupted(
        "launcher", "transformer_lm.py", "--epochs", 2, "--epoch-steps", 4, "--dim", 32,
        "--layers", 1, "--block", 32, "--val-windows", 8, "--sample-length", 10)
    for out in (first, second):
        assert "[rank 0]: 2 rank(s), backend zmq" in out, out
        assert "[rank 0]: weights identical on all 2 rank(s)" in out, out
        assert "[rank 1]: epoch" not in out and "[rank 1]: sample" not in out
    assert "epoch 1:" not in second and "[rank 0]: epoch 2: train loss" in second, second


@pytest.mark.timeout(200)
def test_fsdp_trains_as_ddp_does_and_resumes_exactly(examples):
    """With --fsdp each rank holds half of the model; the training is DDP's (the same losses)
    and a resumed run ends where an uninterrupted one does."""
    small = ("--epochs", 2, "--epoch-steps", 4, "--dim", 32, "--layers", 2, "--block", 32,
             "--val-windows", 8, "--sample-length", 10)
    first, second = examples.resume_matches_uninterrupted("launcher", "transformer_lm.py",
                                                          "--fsdp", *small)
    assert "[rank 0]: parameters, gradients and optimizer state sharded over 2 rank(s)" \
        in second, second
    assert "[rank 0]: sample:" in second, second
    examples.launcher("transformer_lm.py", *small, "--checkpoint", "ddp.ckpt")
    sharded, replicated = (px.load(examples.folder / name) for name in ("straight.ckpt",
                                                                         "ddp.ckpt"))
    assert sharded["validation_loss"] == pytest.approx(replicated["validation_loss"],
                                                       rel=1e-5)
    for name, value in sharded["model"].items():
        np.testing.assert_allclose(value.numpy(), replicated["model"][name].numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
