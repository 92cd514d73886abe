"""torchrun's `@record` (torch.distributed.elastic.multiprocessing.errors): the decorated
entry point's uncaught exception lands in the rank's error file and propagates."""
import json

import pytest

from phalanx.distributed.elastic.multiprocessing.errors import (ChildFailedError,
                                                                 ProcessFailure, record)
from phalanx.launcher.errors import ERROR_FILE_ENV, write_error_file


def test_record_writes_the_error_file_and_reraises(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))
    monkeypatch.setenv("RANK", "3")

    @record
    def main(x):
        raise ValueError(f"bad value {x}")

    with pytest.raises(ValueError, match="bad value 7"):
        main(7)
    written = json.loads(path.read_text())
    assert written["exception"] == "ValueError" and written["rank"] == 3
    assert "bad value 7" in written["message"] and "in main" in written["traceback"]


def test_record_passes_results_and_clean_exits(tmp_path, monkeypatch):
    monkeypatch.setenv(ERROR_FILE_ENV, str(tmp_path / "error.json"))

    @record
    def ok():
        return 5

    @record
    def done():
        raise SystemExit(0)

    assert ok() == 5 and done() is None and not (tmp_path / "error.json").exists()


def test_a_childs_error_file_becomes_the_parents(tmp_path, monkeypatch):
    child_file = tmp_path / "child.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(child_file))
    try:
        raise RuntimeError("the root cause")
    except RuntimeError as e:
        write_error_file(e)
    parent_file = tmp_path / "parent.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(parent_file))

    @record
    def launcher_main():
        raise ChildFailedError("train.py", {1: ProcessFailure(1, 1234, 2, str(child_file))})

    with pytest.raises(ChildFailedError, match="rank 1, exit code 2"):
        launcher_main()
    assert json.loads(parent_file.read_text())["message"] == "the root cause"


def test_torchs_paths():
    import phalanx.nn.common_types as common_types
    from phalanx.nn.parallel.distributed import DistributedDataParallel
    from phalanx.optim.adamw import AdamW
    import phalanx as px
    assert AdamW is px.optim.AdamW and DistributedDataParallel is \
        px.distributed.DistributedDataParallel
    assert common_types._size_2_t is not None
