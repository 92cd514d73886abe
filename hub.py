"""`phalanx.hub`: pretrained weights by URL, and models from a local `hubconf.py`.

    state = px.hub.load_state_dict_from_url("https://.../resnet18-f37072fd.pth",
                                            check_hash=True)
    model.load_state_dict(state)

`load_state_dict_from_url` downloads once into `get_dir()/checkpoints` (`$PHALANX_HOME/hub`,
by default `$XDG_CACHE_HOME/phalanx/hub` or `~/.cache/phalanx/hub`), writes the file
atomically after checking its SHA-256 against the hash in its name when asked, and reads it
with `px.load`: Phalanx's safetensors files, or PyTorch's `torch.save` files through the
allow-list that rebuilds only tensors and containers (never running code from the file, so
`weights_only=False` loads the same state dicts and refuses anything else). `load`, `list`
and `help` take a local directory (`source="local"`): its `hubconf.py` is imported, as
PyTorch does. From GitHub they would download and run a repository's code, which is refused:
clone it, read it, and load it locally.
"""
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request

__all__ = ["download_url_to_file", "get_dir", "help", "list", "load",
           "load_state_dict_from_url", "set_dir"]

HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
_hub_dir = None


def get_dir():
    """The cache directory: `set_dir`'s, else $PHALANX_HOME/hub (PHALANX_HOME defaults to
    $XDG_CACHE_HOME/phalanx, XDG_CACHE_HOME to ~/.cache)."""
    if _hub_dir is not None:
        return _hub_dir
    cache = os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.path.join(os.path.expanduser(os.getenv("PHALANX_HOME",
                                                     os.path.join(cache, "phalanx"))), "hub")


def set_dir(d):
    global _hub_dir
    _hub_dir = os.path.expanduser(os.fspath(d))


def download_url_to_file(url, dst, hash_prefix=None, progress=True):
    """Download `url` to the path `dst` atomically (a temporary file beside it, renamed once
    complete); with `hash_prefix`, the file's SHA-256 must start with it."""
    dst = os.path.expanduser(os.fspath(dst))
    request = urllib.request.Request(url, headers={"User-Agent": "phalanx.hub"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request) as response:
        total = response.headers.get("Content-Length")
        bar = _progress(int(total) if total else None) if progress else None
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(dst) + ".", suffix=".partial",
                                   dir=os.path.dirname(dst) or ".")
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    block = response.read(1 << 16)
                    if not block:
                        break
                    out.write(block)
                    digest.update(block)
                    if bar is not None:
                        bar.update(len(block))
            if hash_prefix is not None and not digest.hexdigest().startswith(hash_prefix):
                raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got '
                                   f'"{digest.hexdigest()}")')
            os.replace(tmp, dst)
        finally:
            if bar is not None:
                bar.close()
            if os.path.exists(tmp):
                os.unlink(tmp)


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)


def load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True,
                             check_hash=False, file_name=None, weights_only=False):
    """The state dict at `url`, downloaded into `model_dir` (default get_dir()/checkpoints)
    unless already there, under `file_name` (default the URL's). `check_hash`: the name holds
    the first digits of the file's SHA-256 (`name-<sha256 prefix>.ext`), checked on download.
    A downloaded file is read weights-only, whatever `weights_only` says (PyTorch's default,
    False, would unpickle anything it holds): to trust one, `px.load(path,
    weights_only=False)` it yourself."""
    model_dir = os.path.join(get_dir(), "checkpoints") if model_dir is None else model_dir
    os.makedirs(model_dir, exist_ok=True)
    name = file_name or os.path.basename(urllib.parse.urlparse(url).path)
    cached = os.path.join(model_dir, name)
    if not os.path.exists(cached):
        sys.stdout.write(f'Downloading: "{url}" to {cached}\n')
        found = HASH_REGEX.search(name) if check_hash else None
        download_url_to_file(url, cached, found.group(1) if found else None, progress=progress)
    from .serialization import load as load_file
    return load_file(cached, map_location=map_location)


# --- models from a local hubconf.py ---------------------------------------------------------
def _hubconf(repo_or_dir, source):
    if source not in ("github", "local"):
        raise ValueError(f'Unknown source: "{source}". Allowed values: "github" | "local".')
    if source == "github":
        raise NotImplementedError(
            f"hub from GitHub ({repo_or_dir!r}) would download and run that repository's "
            f"code: clone it, read its hubconf.py, and load it with source='local'")
    path = os.path.join(repo_or_dir, "hubconf.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no hubconf.py in {repo_or_dir!r}")
    spec = importlib.util.spec_from_file_location("hubconf", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, repo_or_dir)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(repo_or_dir)
    return module


def _entry(module, model):
    entry = getattr(module, model, None)
    if entry is None or not callable(entry):
        raise RuntimeError(f"Cannot find callable {model} in hubconf")
    return entry


def list(github, force_reload=False, skip_validation=False, trust_repo="check", verbose=True,
         source="github"):
    """The entrypoints (public callables) of the directory's hubconf.py."""
    module = _hubconf(github, source)
    return [name for name in dir(module)
            if callable(getattr(module, name)) and not name.startswith("_")]


def help(github, model, force_reload=False, skip_validation=False, trust_repo="check",
         source="github"):
    """The docstring of entrypoint `model`."""
    return _entry(_hubconf(github, source), model).__doc__


def load(repo_or_dir, model, *args, source="github", trust_repo="check", force_reload=False,
         verbose=True, skip_validation=False, **kwargs):
    """`model(*args, **kwargs)` from the hubconf.py of the local directory `repo_or_dir`
    (source="local")."""
    return _entry(_hubconf(repo_or_dir, source), model)(*args, **kwargs)
