"""The share of PyTorch's public names that Phalanx has must not drop: per namespace, the count
of present names is at least the floor recorded in benchmarks/api_coverage_floor.json (raise
it with `python benchmarks/api_coverage.py --update-floor` after adding names)."""
import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    path = os.path.join(ROOT, "benchmarks", "api_coverage.py")
    spec = importlib.util.spec_from_file_location("api_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_coverage = _script()
FLOOR = api_coverage.load_floor()
REPORT = api_coverage.coverage()


def test_floor_was_recorded_with_this_torch():
    assert FLOOR["torch_version"] == torch.__version__.split("+")[0], \
        "the floor was recorded against another PyTorch; re-record it with --update-floor"
    assert set(FLOOR["present"]) == set(api_coverage.NAMESPACES)


@pytest.mark.parametrize("namespace", list(api_coverage.NAMESPACES))
def test_coverage_does_not_drop(namespace):
    used, present, missing = REPORT[namespace]
    floor = FLOOR["present"][namespace]
    assert used is not None, f"no Phalanx counterpart of {namespace} imports"
    assert len(present) >= floor, (
        f"{namespace}: {len(present)} of PyTorch's names present, below the floor of {floor}; "
        f"missing now: {missing}")


def test_the_report_counts_what_it_should():
    """The script itself: names come from torch, presence from phalanx."""
    used, present, missing = REPORT["torch.nn"]
    assert used == "phalanx.nn"
    assert {"Linear", "LSTM", "Upsample"} <= set(present)
    assert "Linear" not in missing and not set(present) & set(missing)
    assert "math" not in present + missing   # imported modules are not PyTorch's names
    assert api_coverage.main(["--missing", "torch.autograd"]) == 0
