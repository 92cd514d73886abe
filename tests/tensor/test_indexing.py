"""Byte (uint8) masks in indexing, `where` and the masked ops, as PyTorch treats them."""
import warnings

import pytest
import torch

import phalanx as px


def test_byte_masks_as_pytorch_treats_them():
    """A uint8 tensor used as an index or a `where` condition is a mask (with PyTorch's
    deprecation warning), never integer positions; masked_select/masked_fill refuse it."""
    for lib in (px, torch):
        x = lib.tensor([1.0, 2.0, 3.0])
        mask = lib.tensor([1, 0, 1], dtype=lib.uint8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert x[mask].tolist() == [1.0, 3.0]
            assert lib.where(mask, x, 0.0).tolist() == [1.0, 0.0, 3.0]
            y = x.clone()
            y[mask] = lib.tensor([0.0, -1.0])
            assert y.tolist() == [0.0, 2.0, -1.0]
        assert len(caught) >= 3 and all("deprecated" in str(w.message) for w in caught)
        assert all(w.filename == __file__ for w in caught)
        with pytest.raises(RuntimeError, match="masked_select: expected BoolTensor for mask"):
            x.masked_select(mask)
        with pytest.raises(RuntimeError, match="masked_fill_ only supports boolean masks"):
            x.masked_fill(mask, 0.0)
        with pytest.raises(RuntimeError, match="masked_fill_ only supports boolean masks"):
            x[mask] = 0.0
        with pytest.raises(RuntimeError, match="where expected condition to be a boolean"):
            lib.where(x, x, 0.0)


def test_pytorchs_words_for_the_common_mistakes():
    for lib in (px, torch):
        with pytest.raises(IndexError, match="invalid index of a 0-dim tensor. Use "
                                             "`tensor.item\\(\\)` in Python"):
            lib.tensor(3.0)[0]
        assert lib.tensor(3.0)[None].shape == (1,) and lib.tensor(3.0)[True].shape == (1,)
        with pytest.raises(RuntimeError, match=r"The size of tensor a \(3\) must match the "
                                               r"size of tensor b \(2\) at non-singleton "
                                               r"dimension 1"):
            lib.ones(2, 3) * lib.ones(3, 2)
