"""Which of PyTorch's public names Phalanx has, per namespace.

    python benchmarks/api_coverage.py                  # counts per namespace
    python benchmarks/api_coverage.py --missing torch.nn.functional   # the missing names
    python benchmarks/api_coverage.py --markdown       # the table for the README
    python benchmarks/api_coverage.py --update-floor   # record today's counts as the floor

The names come from the installed PyTorch: a module's `__all__` where it has one, otherwise
its non-underscore attributes that PyTorch itself defines (not `math`, `typing.Optional`, ...
imported into it); every non-underscore attribute of `torch.Tensor` and `torch.nn.Module`. A
name counts as present when the matching Phalanx object has an attribute of that name. `tests/test_api_coverage.py`
fails when a namespace's count drops below the floor recorded in `api_coverage_floor.json`.
"""
import argparse
import importlib
import json
import os
import sys
import types
import warnings

FLOOR_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api_coverage_floor.json")

# PyTorch namespace -> where Phalanx keeps the same names (first one that imports)
NAMESPACES = {
    "torch": ["phalanx"],
    "torch.Tensor": ["phalanx.Tensor"],
    "torch.nn": ["phalanx.nn"],
    "torch.nn.Module": ["phalanx.nn.Module"],
    "torch.nn.functional": ["phalanx.nn.functional"],
    "torch.optim": ["phalanx.optim"],
    "torch.utils.data": ["phalanx.utils.data", "phalanx.data"],
    "torch.distributed": ["phalanx.distributed"],
    "torch.autograd": ["phalanx.autograd"],
}


def resolve(dotted):
    """A module, or a class/attribute inside one ('phalanx.Tensor')."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        parent, _, attr = dotted.rpartition(".")
        return getattr(importlib.import_module(parent), attr)


def _defined_by_torch(value):
    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[0] == "torch"
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        module = type(value).__module__
    return module.split(".")[0] == "torch"


def public_names(obj):
    if isinstance(obj, type):
        return sorted(n for n in dir(obj) if not n.startswith("_"))
    names = getattr(obj, "__all__", None)
    if names is None:
        names = [n for n in dir(obj) if not n.startswith("_")]
    kept = []
    with warnings.catch_warnings():   # deprecated aliases warn when touched
        warnings.simplefilter("ignore")
        for name in names:
            try:
                value = getattr(obj, name)
            except Exception:  # noqa: BLE001  (an attribute that fails to load is not public)
                continue
            if not name.startswith("_") and _defined_by_torch(value):
                kept.append(name)
    return sorted(set(kept))


def _has(target, name):
    try:
        return hasattr(target, name)
    except Exception:  # noqa: BLE001  (a module __getattr__ that raises: counts as missing)
        return False


def coverage():
    """{namespace: (phalanx namespace used, [present names], [missing names])}."""
    result = {}
    for torch_name, candidates in NAMESPACES.items():
        names = public_names(resolve(torch_name))
        target, used = None, None
        for candidate in candidates:
            try:
                target, used = resolve(candidate), candidate
                break
            except (ImportError, AttributeError):
                continue
        present = [n for n in names if target is not None and _has(target, n)]
        missing = [n for n in names if n not in set(present)]
        result[torch_name] = (used, present, missing)
    return result


def load_floor():
    with open(FLOOR_FILE) as f:
        return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missing", metavar="NAMESPACE", action="append", default=[],
                        help="list the names missing from this PyTorch namespace")
    parser.add_argument("--markdown", action="store_true", help="print a README table")
    parser.add_argument("--update-floor", action="store_true",
                        help=f"write today's counts to {os.path.basename(FLOOR_FILE)}")
    args = parser.parse_args(argv)
    import torch
    report = coverage()
    if args.markdown:
        print(f"| PyTorch {torch.__version__.split('+')[0]} namespace | Phalanx | names | "
              f"present | coverage |")
        print("|---|---|---:|---:|---:|")
    else:
        print(f"{'namespace':22} {'phalanx':22} {'names':>6} {'present':>8} {'missing':>8} "
              f"{'coverage':>9}")
    for ns, (used, present, missing) in report.items():
        total = len(present) + len(missing)
        pct = 100.0 * len(present) / total if total else 100.0
        if args.markdown:
            print(f"| `{ns}` | `{used}` | {total} | {len(present)} | {pct:.0f}% |")
        else:
            print(f"{ns:22} {str(used):22} {total:6d} {len(present):8d} {len(missing):8d} "
                  f"{pct:8.1f}%")
    for ns in args.missing:
        if ns not in report:
            parser.error(f"unknown namespace {ns!r}; choose from {', '.join(report)}")
        print(f"\nmissing from {ns} ({len(report[ns][2])}):")
        print("  " + "\n  ".join(report[ns][2]))
    if args.update_floor:
        floor = {ns: len(present) for ns, (_, present, _) in report.items()}
        with open(FLOOR_FILE, "w") as f:
            json.dump({"torch_version": torch.__version__.split("+")[0], "present": floor},
                      f, indent=2)
            f.write("\n")
        print(f"\nwrote {FLOOR_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
