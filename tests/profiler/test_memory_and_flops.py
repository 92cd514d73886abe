"""`profile(profile_memory=True, with_flops=True)` against PyTorch's profiler: the same programs
under both; FLOPs compared exactly for the ops both count, memory where it is deterministic (an
op's output, what a block keeps), and the tables character for character."""
import gc
import json
import tracemalloc

import numpy as np
import pytest
import torch
from torch.autograd import profiler_util
from torch.profiler import ProfilerActivity

import phalanx as px
import phalanx.nn as nn
import phalanx.profiler as profiler
from phalanx.profiler import events as px_events
from phalanx.profiler import recorder

# what a Phalanx op holds beside its arrays (Tensor, graph node, saved shapes): tracemalloc sees
# Python objects too, PyTorch's allocator only tensor storage
OBJECTS = 4096


@pytest.fixture(autouse=True)
def no_garbage_collection():
    """Python's cyclic collector runs when allocations pass a threshold, and what it frees
    would count in whichever span it runs: off during each test, so the figures are the
    program's own."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def _torch_profile(**flags):
    return torch.profiler.profile(activities=[ProfilerActivity.CPU], **flags)


def _inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return [torch.from_numpy(a) for a in arrays], [px.from_numpy(a.copy()) for a in arrays]


# (case, input shapes, program on (library, its functional module, *inputs))
FLOP_CASES = [
    ("mm", [(64, 128), (128, 32)], lambda m, F, a, b: m.matmul(a, b)),
    ("bmm", [(5, 64, 128), (5, 128, 32)], lambda m, F, a, b: m.bmm(a, b)),
    ("matmul_folded", [(5, 64, 128), (128, 32)], lambda m, F, a, b: a @ b),
    ("matmul_broadcast", [(2, 1, 4, 8), (3, 8, 6)], lambda m, F, a, b: a @ b),
    ("matmul_2d_3d", [(64, 128), (5, 128, 32)], lambda m, F, a, b: a @ b),
    ("vector_matrix", [(128,), (128, 32)], lambda m, F, a, b: a @ b),
    ("mv", [(64, 128), (128,)], lambda m, F, a, b: a @ b),
    ("dot", [(128,), (128,)], lambda m, F, a, b: a @ b),
    ("linear", [(4, 512), (10, 512), (10,)], lambda m, F, x, w, b: F.linear(x, w, b)),
    ("linear_3d", [(3, 5, 16), (8, 16), (8,)], lambda m, F, x, w, b: F.linear(x, w, b)),
    ("linear_no_bias", [(3, 16), (8, 16)], lambda m, F, x, w: F.linear(x, w)),
    ("linear_vector", [(16,), (8, 16), (8,)], lambda m, F, x, w, b: F.linear(x, w, b)),
    ("conv2d", [(4, 3, 16, 16), (8, 3, 3, 3), (8,)],
     lambda m, F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1)),
    ("conv2d_groups_dilation", [(2, 4, 10, 10), (6, 2, 3, 3)],
     lambda m, F, x, w: F.conv2d(x, w, groups=2, dilation=2)),
    ("mul_scalar", [(64, 128)], lambda m, F, a: a * 2),
    ("mul_broadcast", [(64, 1), (1, 128)], lambda m, F, a, b: a * b),
    ("add_broadcast", [(1, 128), (64, 1)], lambda m, F, a, b: a + b),
    ("add_alpha", [(4, 5), (4, 5)], lambda m, F, a, b: m.add(a, b, alpha=3)),
    ("sub", [(4, 5), (4, 5)], lambda m, F, a, b: a - b),
    ("relu", [(4, 5)], lambda m, F, a: F.relu(a)),
]


@pytest.mark.parametrize("case, shapes, program", FLOP_CASES, ids=[c[0] for c in FLOP_CASES])
def test_flops_equal_pytorchs(case, shapes, program):
    t_in, p_in = _inputs(shapes)
    with _torch_profile(with_flops=True) as t_prof:
        program(torch, torch.nn.functional, *t_in)
    with profiler.profile(with_flops=True) as p_prof:
        program(px, px.nn.functional, *p_in)
    expected = sum(e.flops for e in t_prof.events())
    assert sum(e.flops for e in p_prof.events()) == expected
    assert (expected > 0) == (case not in ("mv", "dot", "sub", "relu"))


def _models(batch=64):
    """The same Conv2d -> ReLU -> Flatten -> Linear model in both libraries."""
    torch.manual_seed(0)
    t_model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
                                  torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(512, 10))
    p_model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(512, 10))
    p_model.load_state_dict({k: px.from_numpy(v.detach().numpy().copy())
                             for k, v in t_model.state_dict().items()})
    t_x, p_x = _inputs([(batch, 3, 16, 16)], seed=1)
    return t_model, t_x[0], p_model, p_x[0]


def _total(events, name, parent=None, attr="flops"):
    return sum(getattr(e, attr) for e in events if e.name == name and
               (parent is None or (e.cpu_parent is not None and e.cpu_parent.name == parent)))


def test_model_forward_and_backward_flops_and_memory_against_pytorch():
    t_model, t_x, p_model, p_x = _models()
    with _torch_profile(profile_memory=True, with_flops=True) as t_prof:
        t_model(t_x).sum().backward()
    with profiler.profile(profile_memory=True, with_flops=True) as p_prof:
        p_model(p_x).sum().backward()
    t_ev, p_ev = t_prof.events(), p_prof.events()
    # FLOPs: the convolution (PyTorch counts none for its backward, Phalanx's _ConvWeight
    # neither) and the linear layer's forward GEMM (aten::addmm inside aten::linear)
    assert _total(p_ev, "_Conv") == _total(t_ev, "aten::conv2d") == 2 * 64 * 8 * 8 * 8 * 27
    assert _total(p_ev, "Linear") == _total(t_ev, "aten::addmm", "aten::linear") > 0
    # its backward's two GEMMs (input and weight gradients): aten::mm rows under
    # AddmmBackward0 in PyTorch, the graph node's own count here
    assert _total(p_ev, "LinearBackward0") == _total(t_ev, "aten::mm", "AddmmBackward0") == \
        2 * _total(p_ev, "Linear")
    # memory: an op that makes one output holds it (PyTorch's figure exactly, Phalanx's with
    # the Python objects around it); the convolution at least its output (Phalanx also keeps
    # the input windows for the weight gradient)
    for p_name, t_name, nbytes in (("Relu", "aten::clamp_min", 64 * 512 * 4),
                                   ("Linear", "aten::addmm", 64 * 10 * 4)):
        t_self = _total(t_ev, t_name, attr="self_cpu_memory_usage")
        p_self = _total(p_ev, p_name, attr="self_cpu_memory_usage")
        assert t_self == nbytes and nbytes <= p_self <= nbytes + OBJECTS, (p_name, p_self)
    assert _total(t_ev, "aten::conv2d", attr="cpu_memory_usage") >= 64 * 512 * 4
    assert _total(p_ev, "_Conv", attr="cpu_memory_usage") >= 64 * 512 * 4
    # the gradients kept are most of what the block holds at its end, in both
    grads = sum(p.numel() for p in t_model.parameters()) * 4
    t_net = sum(e.self_cpu_memory_usage for e in t_ev)
    p_net = sum(e.self_cpu_memory_usage for e in p_ev)
    assert grads <= t_net <= grads + 1024
    assert abs(p_net - t_net) <= 4 * OBJECTS
    # both tables hold the columns, with PyTorch's headers (the names aside)
    t_head = t_prof.key_averages().table().splitlines()[1]
    p_head = p_prof.key_averages().table().splitlines()[1]
    assert "CPU Mem  Self CPU Mem" in p_head and p_head.rstrip().endswith("Total KFLOPs")
    assert p_head.split("Self CPU %")[1] == t_head.split("Self CPU %")[1]


def test_self_memory_adds_up_to_what_the_block_keeps():
    """The self memory of every event, '[memory]' ones included, adds up to what the block
    allocated less what it freed; an event's memory is its self memory plus its children's."""
    keep_bytes = 1_000_000 * 4

    def program(x, big):
        kept = big + 1                           # held at the end
        y = x.exp()
        z = y * 2
        del y, z                                 # freed inside the block
        return kept

    t_in, p_in = _inputs([(256, 256), (1_000_000,)])
    with _torch_profile(profile_memory=True) as t_prof:
        with torch.profiler.record_function("block"):
            t_kept = program(*t_in)
    with profiler.profile(profile_memory=True) as p_prof:
        with profiler.record_function("block"):
            p_kept = program(*p_in)
    for events in (t_prof.events(), p_prof.events()):
        net = sum(e.self_cpu_memory_usage for e in events)
        assert keep_bytes <= net <= keep_bytes + OBJECTS
        top = [e for e in events if e.cpu_parent is None]
        assert net == sum(e.cpu_memory_usage for e in top)
    p_ev = p_prof.events()
    block = next(e for e in p_ev if e.name == "block")
    children = [e for e in p_ev if e.cpu_parent is block]
    assert {e.name for e in children} == {"Add", "Exp", "Mul"}
    assert block.self_cpu_memory_usage == \
        block.cpu_memory_usage - sum(e.cpu_memory_usage for e in children)
    for name in ("Exp", "Mul"):       # each allocates one 256 x 256 float32 output
        e = next(e for e in children if e.name == name)
        assert 256 * 256 * 4 <= e.self_cpu_memory_usage <= 256 * 256 * 4 + OBJECTS
    # the two outputs freed inside the block count there, as in PyTorch
    t_block = next(e for e in t_prof.events() if e.name == "block")
    assert t_block.self_cpu_memory_usage == -2 * 256 * 256 * 4
    # (give or take the Python objects the block makes and keeps: a frame's dict may grow)
    assert abs(block.self_cpu_memory_usage + 2 * 256 * 256 * 4) <= OBJECTS
    del t_kept, p_kept


def test_memory_freed_outside_every_span_is_a_memory_event():
    x = px.ones(256, 256)
    with profiler.profile(profile_memory=True) as prof:
        y = x.exp()
        del y                                    # freed outside every op
    events = prof.events()
    freed = [e for e in events if e.name == "[memory]" and e.cpu_memory_usage < 0]
    assert len(freed) == 1 and freed[0].cpu_memory_usage <= -256 * 256 * 4
    assert freed[0].cpu_time_total == 0 and freed[0].cpu_parent is None
    row = next(a for a in prof.key_averages() if a.key == "[memory]")
    assert row.cpu_memory_usage == sum(e.cpu_memory_usage for e in events
                                       if e.name == "[memory]")
    trace = prof.chrome_trace()
    instants = [e for e in trace["traceEvents"] if e["name"] == "[memory]"]
    assert all(e["ph"] == "i" for e in instants)
    assert sorted(e["args"]["Bytes"] for e in instants) == \
        sorted(e.cpu_memory_usage for e in events if e.name == "[memory]")
    json.dumps(trace)                            # the private keys left the args
    assert not any(k.startswith("_") for e in trace["traceEvents"] for k in e.get("args", {}))


def test_sorting_by_memory_orders_the_rows():
    x = px.ones(64, 64)
    with profiler.profile(profile_memory=True) as prof:
        for n in (8, 64, 256):
            px.ones(n, n).exp()                  # Ones and Exp, growing
        x.sum()
    averages = prof.key_averages()
    for key in ("self_cpu_memory_usage", "cpu_memory_usage"):
        rows = averages.table(sort_by=key, row_limit=-1).splitlines()[3:-2]
        expected = sorted(averages, key=lambda a: getattr(a, key), reverse=True)
        assert [r.split()[0] for r in rows] == [a.key for a in expected]
        values = [getattr(a, key) for a in expected]
        assert values == sorted(values, reverse=True) and values[0] >= 256 * 256 * 4


def _torch_and_phalanx_lists(rows, profile_memory, with_flops):
    """The same events (name, start, end, FLOPs, bytes, input shapes) as PyTorch's and
    Phalanx's event lists."""
    t_list = profiler_util.EventList(
        [profiler_util.FunctionEvent(i, name, 1, start, end, flops=flops,
                                     cpu_memory_usage=nbytes, input_shapes=shapes, stack=[])
         for i, (name, start, end, flops, nbytes, shapes) in enumerate(rows)],
        profile_memory=profile_memory, with_flops=with_flops)
    t_list._build_tree()
    p_events = []
    for i, (name, start, end, flops, nbytes, shapes) in enumerate(rows):
        e = px_events.FunctionEvent(i, name, "cpu_op", 1, start, end, {"Input Dims": shapes})
        e.cpu_memory_usage = e.self_cpu_memory_usage = nbytes
        e.flops = flops
        p_events.append(e)
    return t_list, px_events.EventList(p_events, profile_memory, with_flops)


@pytest.mark.parametrize("smallest_flops", [1, 999, 1000, 52_000, 2_000_000, 3 * 10**9,
                                            4 * 10**12, 5 * 10**15, 6 * 10**18])
@pytest.mark.parametrize("profile_memory, with_flops", [(True, True), (True, False),
                                                        (False, True)])
def test_tables_are_pytorchs_character_for_character(profile_memory, with_flops,
                                                     smallest_flops):
    rows = [("aten::mm", 0.0, 1234.5, 2 * smallest_flops, 262144, [[64, 128], [128, 32]]),
            ("aten::relu", 1300.0, 1310.25, 0, -512, [[64, 32]]),
            ("[memory]", 1400.0, 1400.0, 0, -3 * 1024**3, []),
            ("a_rather_long_name", 1500.0, 2500.0, smallest_flops, 1536, [[3]]),
            ("aten::conv2d", 3000.0, 5000.0, 7 * smallest_flops, 5 * 1024**2 + 7,
             [[1, 2, 3, 4], [5, 6]]),
            ("aten::mm", 6000.0, 6500.0, 2 * smallest_flops, 1023, [[64, 128], [128, 32]])]
    t_list, p_list = _torch_and_phalanx_lists(rows, profile_memory, with_flops)
    for kwargs in ({}, {"sort_by": "self_cpu_memory_usage"},
                   {"sort_by": "cpu_memory_usage", "row_limit": 2}, {"sort_by": "flops"},
                   {"sort_by": "cpu_time_total", "header": "heading"},
                   {"top_level_events_only": True},
                   {"header": "heading", "top_level_events_only": True}):
        assert p_list.table(**kwargs) == t_list.table(**kwargs), kwargs
    assert p_list.key_averages().table() == t_list.key_averages().table()
    assert p_list.key_averages().table(top_level_events_only=True) == \
        t_list.key_averages().table(top_level_events_only=True)
    assert p_list.key_averages(group_by_input_shapes=True).table(sort_by="flops") == \
        t_list.key_averages(group_by_input_shapes=True).table(sort_by="flops")


@pytest.mark.parametrize("nbytes", [0, 1, -512, 1023, 1024, -1536, 1024**2 - 1, 2044723,
                                    -5 * 1024**2, 1024**3, 3 * 1024**3 + 12345, -(1024**4)])
def test_memory_format_is_pytorchs(nbytes):
    assert px_events.format_memory(nbytes) == profiler_util._format_memory(nbytes)


def test_flops_with_stack_come_before_the_source_location():
    """PyTorch heads the FLOPs column after the source location but fills it before: Phalanx
    puts both before, so that the values sit under their header."""
    a = px.ones(16, 16)
    with profiler.profile(with_flops=True, with_stack=True) as prof:
        a @ a
    lines = prof.events().table().splitlines()
    header, row = lines[1], lines[3]
    assert header.index("Total KFLOPs") < header.index("Source Location")
    start = header.index("Source Location")
    assert "test_flops_with_stack_come_before" in row[start:]
    flops_at = header.index("Total KFLOPs")
    assert row[flops_at:start].strip() == "8.192"


def test_memory_is_measured_only_while_a_window_records():
    assert not tracemalloc.is_tracing()
    with profiler.profile() as prof:             # profile_memory=False: nothing new runs
        assert not tracemalloc.is_tracing() and not recorder.memory
        px.ones(8).exp()
    assert all(e.cpu_memory_usage == 0 for e in prof.events())
    assert "CPU Mem" not in prof.key_averages().table()
    with profiler.profile(profile_memory=True):
        assert tracemalloc.is_tracing() and recorder.memory
    assert not tracemalloc.is_tracing() and not recorder.memory
    with pytest.raises(ZeroDivisionError):
        with profiler.profile(profile_memory=True):
            1 / 0
    assert not tracemalloc.is_tracing() and not recorder.memory
    tracemalloc.start()                          # the user's tracing is left as it was
    try:
        with profiler.profile(profile_memory=True) as prof:
            px.ones(8).exp()
        assert tracemalloc.is_tracing()
        assert any(e.cpu_memory_usage > 0 for e in prof.events())
    finally:
        tracemalloc.stop()
    # a schedule traces in its recorded windows only
    tracing = []
    with profiler.profile(profile_memory=True, schedule=profiler.schedule(
            wait=1, warmup=1, active=2, repeat=1)) as prof:
        for _ in range(5):
            tracing.append(tracemalloc.is_tracing())
            px.ones(64).exp()
            prof.step()
    assert tracing == [False, False, True, True, False]
    steps = [e for e in prof.events() if e.name.startswith("ProfilerStep#")]
    assert len(steps) == 2 and all(e.cpu_memory_usage > 0 for e in steps)
    assert not tracemalloc.is_tracing()


def test_options_reach_the_legacy_profiler_and_cuda_is_refused():
    with px.autograd.profiler.profile(profile_memory=True, with_flops=True) as prof:
        px.ones(32, 32) @ px.ones(32, 32)
    header = prof.table().splitlines()[1]
    assert "Self CPU Mem" in header and "Input Shapes" in header and "Total KFLOPs" in header
    with pytest.raises(NotImplementedError, match="profile_memory"):
        profiler.profile(activities=[profiler.ProfilerActivity.CUDA], profile_memory=True)


def test_top_level_only_leaves_out_nested_rows_of_the_averages():
    """key_averages().table(top_level_events_only=True) keeps the rows whose first span had
    no parent, as PyTorch's: the ops inside a record_function block go."""
    with profiler.profile() as prof:
        with profiler.record_function("outer"):
            px.ones(3).sum()
        px.ones(2).mean()
    lines = prof.key_averages().table(top_level_events_only=True).splitlines()
    assert lines[1] == "This report only display top-level ops statistics"
    assert [line.split()[0] for line in lines[5:-2]] == ["outer", "Mean"]
