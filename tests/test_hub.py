"""`phalanx.hub`: weights downloaded from a URL (a server on loopback here), cached, checked
against the hash in their name, read without running code; models from a local hubconf.py."""
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

import phalanx as px


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on 127.0.0.1: (directory, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def torch_checkpoint(root):
    """A state dict written by torch.save, named `tiny-<sha256 prefix>.pth` as model zoos do."""
    state = torch.nn.Linear(3, 2).state_dict()
    path = root / "tiny.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = root / f"tiny-{digest[:8]}.pth"
    path.rename(named)
    return state, named.name


def test_weights_download_once_and_load_into_a_model(served, tmp_path, capsys):
    root, url, requests = served
    state, name = torch_checkpoint(root)
    px.hub.set_dir(tmp_path / "hub")
    try:
        loaded = px.hub.load_state_dict_from_url(f"{url}/{name}", check_hash=True,
                                                 progress=False)
        again = px.hub.load_state_dict_from_url(f"{url}/{name}", check_hash=True)
    finally:
        px.hub._hub_dir = None
    assert requests == [f"/{name}"]                        # the second came from the cache
    assert (tmp_path / "hub" / "checkpoints" / name).exists()
    model = px.nn.Linear(3, 2)
    model.load_state_dict(again)
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value.numpy())
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), value.numpy())
    assert "Downloading" in capsys.readouterr().out


def test_a_wrong_hash_leaves_nothing_in_the_cache(served, tmp_path):
    root, url, _ = served
    _, name = torch_checkpoint(root)
    bad = name.replace("tiny-", "tiny-0000")
    (root / name).rename(root / bad)
    with pytest.raises(RuntimeError, match="invalid hash value"):
        px.hub.load_state_dict_from_url(f"{url}/{bad}", model_dir=tmp_path / "m",
                                        check_hash=True, progress=False)
    assert list((tmp_path / "m").iterdir()) == []
    px.hub.download_url_to_file(f"{url}/{bad}", tmp_path / "plain.pth", progress=False)
    state = px.load(tmp_path / "plain.pth")
    assert set(state) == {"weight", "bias"}


def test_models_from_a_local_hubconf(tmp_path):
    (tmp_path / "hubconf.py").write_text(
        "import phalanx as px\n"
        "def tiny(width=4):\n"
        "    '''A tiny model.'''\n"
        "    return px.nn.Linear(2, width)\n"
        "def _private():\n"
        "    pass\n")
    assert px.hub.list(str(tmp_path), source="local") == ["tiny"]
    assert px.hub.help(str(tmp_path), "tiny", source="local") == "A tiny model."
    assert px.hub.load(str(tmp_path), "tiny", width=5, source="local").out_features == 5
    with pytest.raises(RuntimeError, match="Cannot find callable missing"):
        px.hub.load(str(tmp_path), "missing", source="local")
    with pytest.raises(NotImplementedError, match="clone it"):
        px.hub.load("pytorch/vision", "resnet18")
