"""`distributed.checkpoint.load` in a world of one against a damaged or forged `.metadata`
(found by review: a chunk's file could name any path, e.g. "../x" or an absolute one, and be
read; a chunk listed twice counted as covering the tensor and left uninitialised memory in
it; a stored tensor of another shape or dtype than its chunk's was read; malformed entries
raised a bare KeyError or AttributeError). Each damage raises one ValueError naming the
folder, the key and the fault; a checkpoint as `save` wrote it still loads."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import phalanx as px
import phalanx.distributed.checkpoint as dcp


def _state():
    return {"w": px.arange(8.0).reshape(4, 2), "step": px.tensor(3.0),
            "empty": px.zeros(0, 3), "ids": px.arange(3), "half": px.ones(2, dtype=px.bfloat16),
            "epoch": 7, "betas": (0.9, 0.99), "cfg": {"name": "run", "sizes": [1, 2]}}


def _blank():
    return {"w": px.full((4, 2), -1.0), "step": px.tensor(0.0), "empty": px.ones(0, 3),
            "ids": px.zeros(3, dtype=px.int64), "half": px.zeros(2, dtype=px.bfloat16),
            "epoch": 0, "betas": None, "cfg": {"name": None, "sizes": None}}


@pytest.fixture
def ckpt(world_of_one, tmp_path):
    """A checkpoint as `save` writes it, and its metadata."""
    folder = str(tmp_path / "ckpt")
    metadata = dcp.save(_state(), checkpoint_id=folder)
    return folder, metadata


def _rewrite(folder, metadata):
    with open(os.path.join(folder, ".metadata"), "w") as f:
        json.dump(metadata, f)


def test_a_saved_checkpoint_round_trips(ckpt):
    folder, _ = ckpt
    state = _blank()
    dcp.load(state, checkpoint_id=folder)
    np.testing.assert_array_equal(state["w"].numpy(), np.arange(8.0).reshape(4, 2))
    assert state["step"].item() == 3.0 and state["empty"].shape == (0, 3)
    assert state["ids"].tolist() == [0, 1, 2] and state["half"].tolist() == [1.0, 1.0]
    assert state["epoch"] == 7 and state["betas"] == (0.9, 0.99)
    assert state["cfg"] == {"name": "run", "sizes": [1, 2]}


def test_a_checkpoint_split_into_chunks_by_hand_loads(ckpt):
    """Chunks that tile the tensor exactly, from two files, load (what a resharded save of
    two ranks looks like)."""
    from safetensors.numpy import load_file
    folder, metadata = ckpt
    name = metadata["files"][0]
    other = name.replace("__0_", "__1_")
    w = np.arange(8.0, dtype=np.float32).reshape(4, 2)
    save_file({**load_file(os.path.join(folder, name)), "w": w[:3].copy()},
              os.path.join(folder, name))
    save_file({"w": w[3:].copy()}, os.path.join(folder, other))
    metadata["files"] = sorted([name, other])
    metadata["tensors"]["w"]["chunks"] = [
        {"file": name, "offsets": [0, 0], "shape": [3, 2]},
        {"file": other, "offsets": [3, 0], "shape": [1, 2]}]
    _rewrite(folder, metadata)
    state = _blank()
    dcp.load(state, checkpoint_id=folder)
    np.testing.assert_array_equal(state["w"].numpy(), w)


def _chunks(m):
    return m["tensors"]["w"]["chunks"]


def _set(target, **kv):
    target.update(kv)


# (what is damaged, how, a fragment of the error)
DAMAGE = [
    ("file ../", lambda m, f: _set(_chunks(m)[0], file="../outside.safetensors"),
     r"chunks\[0\]\.file is '\.\./outside\.safetensors', not one of the files listed"),
    ("file absolute", lambda m, f: _set(_chunks(m)[0], file=os.path.join(
        os.path.dirname(f), "outside.safetensors")),
     r"chunks\[0\]\.file is '/.*', not one of the files listed"),
    ("file not listed", lambda m, f: _set(_chunks(m)[0], file="__0_00000000.safetensors"),
     "not one of the files listed"),
    ("files lists a path", lambda m, f: m["files"].append("../__0_%s.safetensors" % m["save"]),
     r"files\[1\] is .*, not a file name of save"),
    ("files of another save", lambda m, f: m["files"].append("__1_0123abcd.safetensors"),
     r"files\[1\] is .*, not a file name of save"),
    ("duplicate chunk", lambda m, f: _chunks(m).append(dict(_chunks(m)[0])),
     r"chunks\[0\] and chunks\[1\] overlap"),
    ("overlapping halves", lambda m, f: _set(m["tensors"]["w"], chunks=[
        {"file": m["files"][0], "offsets": [0, 0], "shape": [3, 2]},
        {"file": m["files"][0], "offsets": [1, 0], "shape": [1, 2]}]), "overlap"),
    ("half-size duplicates", lambda m, f: _set(m["tensors"]["w"], chunks=[
        {"file": m["files"][0], "offsets": [0, 0], "shape": [2, 2]}] * 2), "overlap"),
    ("missing chunk", lambda m, f: _set(_chunks(m)[0], shape=[3, 2]),
     r"hold 6 elements in all, but the tensor of shape \[4, 2\] has 8"),
    ("no chunks", lambda m, f: _set(m["tensors"]["w"], chunks=[]), "hold 0 elements"),
    ("offsets out of bounds", lambda m, f: _set(_chunks(m)[0], offsets=[1, 0]),
     r"reaches outside the tensor's shape \[4, 2\]"),
    ("negative offset", lambda m, f: _set(_chunks(m)[0], offsets=[-1, 0]),
     r"offsets\[0\] is -1, not a non-negative integer"),
    ("offsets of another rank", lambda m, f: _set(_chunks(m)[0], offsets=[0]),
     "the tensor has 2 dimensions"),
    ("offsets a string", lambda m, f: _set(_chunks(m)[0], offsets="00"), r"offsets is '00'"),
    ("shape of floats", lambda m, f: _set(_chunks(m)[0], shape=[4.0, 2.0]),
     r"shape\[0\] is 4\.0"),
    ("shape of bools", lambda m, f: _set(_chunks(m)[0], shape=[4, True]),
     r"shape\[1\] is True"),
    ("missing offsets", lambda m, f: _chunks(m)[0].pop("offsets"),
     r"tensors\['w'\]\.chunks\[0\] has no 'offsets'"),
    ("missing file", lambda m, f: _chunks(m)[0].pop("file"), "has no 'file'"),
    ("missing dtype", lambda m, f: m["tensors"]["w"].pop("dtype"),
     r"tensors\['w'\] has no 'dtype'"),
    ("missing tensors", lambda m, f: m.pop("tensors"), "has no 'tensors'"),
    ("missing version", lambda m, f: m.pop("version"), "the top level has no 'version'"),
    ("missing values", lambda m, f: m.pop("values"), "has no 'values'"),
    ("tensors a list", lambda m, f: _set(m, tensors=[]), r"tensors is \[\] \(list\), not a dict"),
    ("chunk a list", lambda m, f: _set(m["tensors"]["w"], chunks=[[0]]),
     r"chunks\[0\] is \[0\] \(list\), not a dict"),
    ("version 2", lambda m, f: _set(m, version=2), "version is 2; this Phalanx reads version 1"),
    ("version a string", lambda m, f: _set(m, version="1"), "version is '1'"),
    ("huge dtype", lambda m, f: _set(m["tensors"]["w"], dtype="V4000000000"),
     r"dtype is 'V4000000000', not one of"),
    ("bad tuple value", lambda m, f: _set(m["values"], betas={"__tuple__": 5}),
     r"values\['betas'\] is .*, not a value save writes"),
    ("path of another key", lambda m, f: _set(m["paths"], w=[["key", "step"]]),
     r"paths\['w'\] is .*, not the path of 'w'"),
    ("path step unknown", lambda m, f: _set(m["paths"], w=[["attr", "w"]]),
     r"paths\['w'\] is"),
    ("paths missing a key", lambda m, f: m["paths"].pop("w"), "does not name the"),
]


@pytest.mark.parametrize("how, fragment", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_metadata_raises_one_clear_error(ckpt, how, fragment):
    folder, metadata = ckpt
    # a file outside the folder that a forged path could reach
    save_file({"w": np.full((4, 2), 666.0, np.float32)},
              os.path.join(os.path.dirname(folder), "outside.safetensors"))
    save_file({"w": np.full((4, 2), 666.0, np.float32)},
              os.path.join(folder, "__0_00000000.safetensors"))
    damaged = json.loads(json.dumps(metadata))
    how(damaged, folder)
    _rewrite(folder, damaged)
    state = _blank()
    with pytest.raises(ValueError, match=fragment) as info:
        dcp.load(state, checkpoint_id=folder)
    assert folder in str(info.value) and "is damaged" in str(info.value)
    assert (state["w"].numpy() == -1.0).all()          # nothing read into it


@pytest.mark.parametrize("top", [[], "text", 1], ids=["list", "string", "number"])
def test_metadata_that_is_no_dict_or_no_json_is_refused(ckpt, top):
    folder, _ = ckpt
    _rewrite(folder, top)
    with pytest.raises(ValueError, match=r"is damaged: the top level is .* not a dict"):
        dcp.load(_blank(), checkpoint_id=folder)
    with open(os.path.join(folder, ".metadata"), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match=f"the .metadata of the checkpoint in {folder} is "
                                         f"not JSON"):
        dcp.load(_blank(), checkpoint_id=folder)


@pytest.mark.parametrize("stored, fragment", [
    (np.arange(2.0, dtype=np.float32).reshape(1, 2), r"has shape \[4, 2\] but .* holds 'w' "
                                                     r"with shape \[1, 2\]"),
    (np.arange(8.0).reshape(4, 2), "holds 'w' as float64, but the metadata says float32"),
    (None, "which holds no 'w'")], ids=["shape", "dtype", "absent"])
def test_a_stored_tensor_unlike_its_chunk_is_refused(ckpt, stored, fragment):
    """The file is the listed one, but what it holds is not what the metadata says."""
    from safetensors.numpy import load_file
    folder, metadata = ckpt
    path = os.path.join(folder, metadata["files"][0])
    arrays = load_file(path)
    if stored is None:
        del arrays["w"]
    else:
        arrays["w"] = stored
    save_file(arrays, path)
    with pytest.raises(ValueError, match=fragment) as info:
        dcp.load(_blank(), checkpoint_id=folder)
    assert folder in str(info.value)


def test_dcp_to_one_file_and_back_keeps_the_nesting(ckpt, tmp_path):
    """format_utils.dcp_to_torch_save: the saved structure, tuples, empty and bfloat16
    tensors; a checkpoint from before paths were recorded comes out keyed by dotted names;
    torch_save_to_dcp makes a folder that loads as the original did."""
    from phalanx.distributed.checkpoint.format_utils import dcp_to_torch_save, \
        torch_save_to_dcp
    folder, metadata = ckpt
    dcp_to_torch_save(folder, tmp_path / "one.pt")
    one = px.load(tmp_path / "one.pt")
    assert one["w"].tolist() == _state()["w"].tolist() and one["empty"].shape == (0, 3)
    assert one["half"].dtype == px.bfloat16 and one["cfg"] == {"name": "run", "sizes": [1, 2]}
    assert one["epoch"] == 7 and tuple(one["betas"]) == (0.9, 0.99)
    torch_save_to_dcp(tmp_path / "one.pt", tmp_path / "again")
    state = _blank()
    dcp.load(state, checkpoint_id=str(tmp_path / "again"))
    assert state["w"].tolist() == _state()["w"].tolist() and state["epoch"] == 7
    nested = {"model": {"layer.0.weight": px.ones(2)}, "groups": [{"lr": 0.1}]}
    dcp.save(nested, checkpoint_id=str(tmp_path / "nested"))
    dcp_to_torch_save(tmp_path / "nested", tmp_path / "nested.pt")
    back = px.load(tmp_path / "nested.pt")
    assert list(back["model"]) == ["layer.0.weight"] and back["groups"] == [{"lr": 0.1}]
    metadata.pop("paths")                         # an older save
    _rewrite(folder, metadata)
    dcp_to_torch_save(folder, tmp_path / "flat.pt")
    flat = px.load(tmp_path / "flat.pt")
    assert "cfg.name" in flat and flat["w"].shape == (4, 2)
    state = _blank()
    dcp.load(state, checkpoint_id=folder)         # and it still loads
