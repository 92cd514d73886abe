"""benchmarks/script_steps.py runs every model it times, on weights copied from PyTorch (the
two frameworks' eval-mode outputs agree), so its table compares like with like."""
import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "script_steps.py"
_spec = importlib.util.spec_from_file_location("script_steps", _path)
ss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ss)


@pytest.mark.parametrize("name", list(ss.CASES))
def test_every_case_runs_on_copied_weights(name):
    t_phalanx, t_torch, diff = ss.run_case(name, repeats=1)
    assert t_phalanx > 0 and t_torch > 0
    assert diff < 1e-4, f"{name}: outputs differ by {diff} after copying the weights"
