"""default_collate against torch.utils.data.default_collate on the same samples."""
import collections

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import phalanx as px
from phalanx.data import default_collate, default_convert

Point = collections.namedtuple("Point", "x y")


def _same(ours, theirs):
    """Same structure, types of containers, values and dtypes."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, px.Tensor), type(ours)
        assert ours.dtype.name == str(theirs.dtype).replace("torch.", ""), (ours.dtype,
                                                                            theirs.dtype)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and ours.keys() == theirs.keys()
        for k in theirs:
            _same(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
    else:
        assert ours == theirs


SAMPLES = {
    "ints": [1, 2, 3],
    "floats": [0.5, 1.5],
    "bools": [True, False],
    "strings": ["a", "b"],
    "numpy arrays": [np.arange(6, dtype=np.float32).reshape(2, 3) + i for i in range(4)],
    "numpy scalars": [np.float32(1.5), np.float32(2.5)],
    "numpy int64": [np.int64(3), np.int64(4)],
    "tuples": [(np.ones(2, np.float32) * i, i) for i in range(3)],
    "lists": [[i, float(i), "s"] for i in range(3)],
    "dicts": [{"img": np.full((2, 2), i, np.uint8), "label": i, "meta": {"id": str(i)}}
              for i in range(3)],
    "namedtuples": [Point(np.arange(3) + i, i * 1.0) for i in range(2)],
    "numpy strings": [np.str_("a"), np.str_("b")],
    "numpy bytes": [np.bytes_(b"a"), np.bytes_(b"b")],
    "defaultdicts": [collections.defaultdict(list, a=i) for i in range(3)],
}


@pytest.mark.parametrize("name", SAMPLES)
def test_default_collate_matches_torch(name):
    batch = SAMPLES[name]
    _same(default_collate(batch), tud.default_collate(batch))


def test_collates_phalanx_tensors():
    batch = [(px.full((2, 3), float(i)), px.tensor(i)) for i in range(4)]
    x, y = default_collate(batch)
    assert x.shape == (4, 2, 3) and x.dtype == px.float32 and y.tolist() == [0, 1, 2, 3]
    assert default_collate([px.tensor(1.0, dtype=px.float16)] * 2).dtype == px.float16


def test_collate_errors_name_the_problem():
    with pytest.raises(RuntimeError, match=r"equal size.*\(2,\).*\(3,\)"):
        default_collate([px.zeros(2), px.zeros(3)])
    with pytest.raises(RuntimeError, match="each element in the batch should be of equal size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(TypeError, match="found object.*collate_fn"):
        default_collate([object(), object()])


def test_default_convert_matches_torch():
    for sample in ([np.arange(3), 1, "x"], {"a": np.ones(2)}, Point(np.zeros(1), 2)):
        _same(default_convert(sample), tud.default_convert(sample))


def test_containers_keep_their_type_and_state():
    # a mutable container is copied and updated, as in PyTorch: a defaultdict keeps its factory
    batch = [collections.defaultdict(list, a=i) for i in range(3)]
    for out in (default_collate(batch), default_convert(batch[0])):
        assert type(out) is collections.defaultdict and out.default_factory is list
    assert default_collate(batch)["a"].tolist() == [0, 1, 2]
    assert batch[0] == {"a": 0}  # the samples themselves are left alone


def test_default_convert_leaves_numpy_strings_alone():
    assert _same(default_convert(np.str_("a")), tud.default_convert(np.str_("a"))) is None
    # PyTorch fails on np.bytes_ here (torch.as_tensor can't take it); bytes stay bytes
    assert default_convert(np.bytes_(b"a")) == b"a"
    assert default_convert([np.str_("a"), {"k": np.bytes_(b"b")}]) == ["a", {"k": b"b"}]
