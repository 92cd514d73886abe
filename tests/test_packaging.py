"""The package as pip installs it: every module inside it imports others by their installed names.

pyproject.toml maps a few public names to other folders (`phalanx.cuda` lives in cuda_api/,
so the folder does not shadow cuda-python's `cuda`). An installed wheel holds phalanx/cuda/
and no phalanx/cuda_api/: an import of the folder name works in an editable checkout and
breaks every installed copy, and in the checkout it loads a second module with its own state.
"""
import ast
import pathlib
import shutil

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _mapping():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {public: folder for public, folder in config["package-dir"].items()
               if public != "phalanx"}
    return folders, set(config["packages"])


def _package_sources():
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in {"tests", "benchmarks", "examples", ".venv", "build"} or \
                parts[0].endswith(".egg-info"):
            continue
        yield path


def test_no_module_imports_a_renamed_folder_by_its_folder_name():
    folders, _ = _mapping()
    hidden = {folder for folder in folders.values()}
    offenders = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = node.module.split(".")
                if node.level == 0 and names[0] == "phalanx":
                    names = names[1:]
                if node.level or node.module.startswith("phalanx"):
                    if names and names[0] in hidden:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                         f"from {'.' * node.level}{node.module}")
    assert not offenders, ("import these by their public names (phalanx.cuda, phalanx.onnx, "
                           "phalanx.multiprocessing), which the wheel installs: " +
                           "; ".join(offenders))


def test_every_folder_with_an_init_is_a_listed_package():
    folders, packages = _mapping()
    by_folder = {folder: public for public, folder in folders.items()}
    missing = []
    for init in ROOT.rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if not parts:
            continue
        if parts[0] in {"tests", "benchmarks", "examples", ".venv", "build", "shared"} or \
                parts[0].endswith(".egg-info") or "__pycache__" in parts:
            continue
        head = by_folder.get(parts[0], f"phalanx.{parts[0]}")
        name = ".".join([head, *parts[1:]])
        if name not in packages:
            missing.append(name)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_cuda_module_is_one_module_for_every_importer():
    import phalanx
    from phalanx.data import dataloader
    from phalanx.distributed import collectives, world
    assert collectives.current_device.__module__.startswith("phalanx.cuda")
    assert world.device_count.__module__.startswith("phalanx.cuda")
    assert dataloader._cuda_available is phalanx.cuda.is_available


def test_every_module_imports_from_the_installed_package(tmp_path):
    """pip installs the package (not editable) into a folder; a Python that sees only that
    folder and the dependencies imports every module of it."""
    import subprocess
    import sys
    import sysconfig
    pytest.importorskip("setuptools")
    target = tmp_path / "site"
    build = ROOT / "build"      # pip builds in the tree: leave no build folder that was not there
    had_build = build.exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--no-build-isolation", "--target", str(target), str(ROOT)],
                       check=True, timeout=240)
    finally:
        if not had_build:
            shutil.rmtree(build, ignore_errors=True)
    script = (
        "import importlib, pkgutil, phalanx\n"
        f"assert phalanx.__file__.startswith({str(target)!r}), phalanx.__file__\n"
        "names = [m.name for m in pkgutil.walk_packages(phalanx.__path__, 'phalanx.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from phalanx.data import dataloader\n"
        "assert dataloader._cuda_available is phalanx.cuda.is_available\n"
        "print(len(names))\n")
    # -S: no site-packages processing, so the checkout's editable install is not seen
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin",
           "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 200
