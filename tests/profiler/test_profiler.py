"""`phalanx.profiler` in one process: what a profile records (op forward and backward spans,
record_function, the optimizer step, DataLoader waits), its table and Chrome trace, the
schedule, and that nothing is left attached when it ends."""
import gzip
import json

import pytest

import phalanx as px
import phalanx.nn as nn
import phalanx.optim as optim
import phalanx.profiler as profiler
from phalanx.autograd import dispatch, engine
from phalanx.data import DataLoader, TensorDataset
from phalanx.profiler import ProfilerAction, recorder


def _model():
    px.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def _step(model, opt, x):
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()


def _nothing_attached():
    return (not recorder.enabled and not recorder.recording and not dispatch.watching()
            and not engine._node_observers and profiler.session._attached is None)


def test_records_forward_backward_optimizer_dataloader_and_user_spans():
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(px.randn(8, 8)), batch_size=4)
    with profiler.profile(record_shapes=True) as prof:
        for (x,) in loader:
            with profiler.record_function("train_step"):
                _step(model, opt, x)
    assert _nothing_attached()
    events = prof.events()
    by_cat = {}
    for e in events:
        by_cat.setdefault(e.cat, []).append(e)
    assert {e.name for e in by_cat["cpu_op"]} >= {"Linear", "Relu"}
    assert {e.name for e in by_cat["backward"]} >= {"LinearBackward0", "ReluBackward0"}
    assert [e.name for e in by_cat["optimizer"]] == ["Optimizer.step#SGD.step"] * 2
    assert [e.name for e in by_cat["user_annotation"]] == ["train_step"] * 2
    # two batches and the StopIteration that ends the epoch
    assert [e.name for e in by_cat["dataloader"]] == \
        ["enumerate(DataLoader)#_SingleProcessIter.__next__"] * 3
    first_linear = next(e for e in events if e.name == "Linear")
    assert first_linear.input_shapes == [[4, 8], [16, 8], [16]]
    # nesting: the ops of a step lie inside its train_step span, on the same thread
    step = by_cat["user_annotation"][0]
    assert first_linear.cpu_parent is step
    assert step.start_us <= first_linear.start_us <= first_linear.end_us <= step.end_us
    inner = [e for e in events if e.cpu_parent is step]
    assert step.self_cpu_time_total == pytest.approx(
        step.cpu_time_total - sum(e.cpu_time_total for e in inner))


def test_key_averages_table_sorts_limits_and_counts():
    model, x = _model(), px.randn(4, 8)
    with profiler.profile(record_shapes=True) as prof:
        for _ in range(3):
            model(x).sum().backward()
    averages = prof.key_averages()
    linear = next(a for a in averages if a.key == "Linear")
    assert linear.count == 6
    assert linear.cpu_time == pytest.approx(linear.cpu_time_total / 6)
    total_self = sum(a.self_cpu_time_total for a in averages)
    assert total_self == pytest.approx(sum(e.self_cpu_time_total for e in prof.events()))
    table = averages.table(sort_by="cpu_time_total", row_limit=3)
    lines = table.splitlines()
    assert "Self CPU %" in lines[1] and "# of Calls" in lines[1]
    rows = lines[3:6]
    assert lines[6].startswith("---") and len(rows) == 3
    top = sorted(averages, key=lambda a: a.cpu_time_total, reverse=True)[:3]
    assert [r.split()[0] for r in rows] == [a.key for a in top]
    assert table.rstrip().endswith(profiler.events.format_time(total_self))
    by_count = averages.table(sort_by="count", row_limit=-1).splitlines()[3]
    assert by_count.split()[0] in {a.key for a in averages
                                   if a.count == max(b.count for b in averages)}
    shaped = prof.key_averages(group_by_input_shape=True)
    assert len([a for a in shaped if a.key == "Linear"]) == 2     # two layer shapes
    assert "Input Shapes" in shaped.table()
    # device columns are zero on a CPU-only run, as in PyTorch: the rows keep their order
    unsorted = averages.table(row_limit=-1).splitlines()[3:]
    assert averages.table(sort_by="cuda_time_total", row_limit=-1).splitlines()[3:] == unsorted
    with pytest.raises(ValueError, match="sort_by"):
        averages.table(sort_by="nonsense")


def test_chrome_trace_is_valid_json_with_complete_events(tmp_path):
    model, x = _model(), px.randn(4, 8)
    with profiler.profile() as prof:
        model(x).sum().backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(prof.events())
    assert {"Linear", "LinearBackward0"} <= {e["name"] for e in spans}
    assert all(e["dur"] >= 0 and e["ts"] > 1e15 for e in spans)   # µs since the epoch
    names = [e for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"]
    assert names and names[0]["args"]["name"] == "MainThread"
    prof.export_chrome_trace(str(tmp_path / "trace.json.gz"))
    assert json.loads(gzip.open(tmp_path / "trace.json.gz", "rt").read()) == trace


def test_schedule_follows_pytorch():
    fn = profiler.schedule(wait=1, warmup=1, active=2, repeat=1, skip_first=1)
    N, W, R, S = (ProfilerAction.NONE, ProfilerAction.WARMUP, ProfilerAction.RECORD,
                  ProfilerAction.RECORD_AND_SAVE)
    assert [fn(i) for i in range(8)] == [N, N, W, R, S, N, N, N]
    forever = profiler.schedule(wait=0, warmup=0, active=2)
    assert [forever(i) for i in range(5)] == [R, S, R, S, R]
    with pytest.raises(ValueError, match="active"):
        profiler.schedule(wait=1, warmup=0, active=0)


def test_scheduled_profile_saves_each_window_with_its_steps():
    model, x = _model(), px.randn(4, 8)
    opt = optim.SGD(model.parameters(), lr=0.1)
    windows = []

    def ready(prof):
        windows.append((prof.step_num, sorted({e.name for e in prof.events()
                                                if e.name.startswith("ProfilerStep")})))
    with profiler.profile(schedule=profiler.schedule(wait=1, warmup=1, active=2, repeat=2),
                          on_trace_ready=ready) as prof:
        for _ in range(9):
            _step(model, opt, x)
            prof.step()
    assert windows == [(4, ["ProfilerStep#2", "ProfilerStep#3"]),
                       (8, ["ProfilerStep#6", "ProfilerStep#7"])]
    steps = [e for e in prof.events() if e.name.startswith("ProfilerStep")]
    optimizer_spans = [e for e in prof.events() if e.cat == "optimizer"]
    assert len(optimizer_spans) == 2
    assert all(any(s.start_us <= o.start_us and o.end_us <= s.end_us for s in steps)
               for o in optimizer_spans)
    merged = [a for a in prof.key_averages() if a.key.startswith("ProfilerStep")]
    assert [(a.key, a.count) for a in merged] == [("ProfilerStep*", 2)]     # as PyTorch's
    assert _nothing_attached()


def test_record_function_as_decorator_and_when_off():
    @profiler.record_function("helper")
    def helper(t):
        return t * 2

    x = px.randn(3)
    helper(x)                                  # no profile: nothing kept, nothing fails
    with profiler.profile() as prof:
        helper(helper(x))
    helpers = [e for e in prof.events() if e.name == "helper"]
    assert len(helpers) == 2
    assert all(any(e.cpu_parent is h for e in prof.events() if e.name == "Mul")
               for h in helpers)


def test_with_stack_points_at_the_callers_line():
    model, x = _model(), px.randn(4, 8)
    with profiler.profile(with_stack=True) as prof:
        model(x)
    linear = next(e for e in prof.events() if e.name == "Linear")
    assert "test_profiler.py" in linear.stack[0] and "test_with_stack" in linear.stack[0]
    assert prof.key_averages(group_by_stack_n=1).table().count("test_profiler.py") >= 1


def test_unsupported_options_and_nesting_raise_and_leave_nothing_behind():
    with pytest.raises(NotImplementedError, match="CUDA"):
        profiler.profile(activities=[profiler.ProfilerActivity.CPU,
                                     profiler.ProfilerActivity.CUDA])
    with pytest.raises(NotImplementedError, match="with_modules"):
        profiler.profile(with_modules=True)
    with profiler.profile():
        with pytest.raises(RuntimeError, match="already running"):
            profiler.profile().start()
    assert _nothing_attached()
    with pytest.raises(ZeroDivisionError):
        with profiler.profile():
            1 / 0
    assert _nothing_attached()
    with pytest.raises(RuntimeError, match="recorded nothing"):
        profiler.profile().events()


def test_tensorboard_trace_handler_writes_one_file_per_window(tmp_path):
    model, x = _model(), px.randn(4, 8)
    with profiler.profile(schedule=profiler.schedule(wait=0, warmup=0, active=1),
                          on_trace_ready=profiler.tensorboard_trace_handler(
                              str(tmp_path), worker_name="w0")) as prof:
        for _ in range(2):
            model(x).sum().backward()
            prof.step()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("w0.") and f.endswith(".pt.trace.json")
                                   for f in files)
    for f in files:
        assert any(e["name"] == "Linear" for e in json.loads((tmp_path / f).read_text())
                   ["traceEvents"])


def test_table_layout_is_pytorchs():
    """Right-aligned columns each followed by two spaces, the name column 4 wider than the
    longest name of the whole list, '[]' for a span without inputs; as PyTorch's table."""
    x = px.ones(8, 8)
    with profiler.profile(record_shapes=True) as prof:
        with profiler.record_function("a_rather_long_block_name"):
            x.exp()
    table = prof.key_averages(group_by_input_shape=True).table(row_limit=1)
    lines = table.splitlines()
    assert all(line.endswith("  ") for line in lines[:-1])
    name_width = len("a_rather_long_block_name") + 4
    assert lines[1].startswith(" " * (name_width - 4) + "Name  ")
    assert lines[0].startswith("-" * name_width + "  ")
    row = lines[3]
    assert row.startswith(" " * 4 + "a_rather_long_block_name  ") and row.rstrip().endswith("[]")
    assert lines[-1].startswith("Self CPU time total: ")
