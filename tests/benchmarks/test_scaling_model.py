"""The alpha-beta scaling model (benchmarks/scaling_model.py): its cost formulas, its buckets
(the same as DDP's), its overlap timeline, and where it lands on the published results."""
import importlib.util
from pathlib import Path

import pytest

import phalanx as px
from phalanx import nn

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "scaling_model.py"
_spec = importlib.util.spec_from_file_location("scaling_model", _path)
sm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sm)

LINK = sm.Link(alpha=1e-5, beta=1e9)
TOPO = sm.Topology("test", 4, sm.Link(1e-6, 1e10), LINK)


def test_ring_and_hierarchical_costs():
    n = 8e6
    assert sm.ring(n, 1, LINK) == 0
    assert sm.ring(n, 4, LINK) == pytest.approx(6 * 1e-5 + 1.5 * n / 1e9)
    # 2 nodes of 4: inside each node a ring over 4, across the nodes one exchange of n
    inside = 6 * 1e-6 + 1.5 * n / 1e10
    across = 2 * 1e-5 + n / 1e9
    assert sm.allreduce(n, 8, TOPO, "hierarchical") == pytest.approx(inside + across)
    assert sm.allreduce(n, 4, TOPO, "hierarchical") == pytest.approx(inside)
    assert sm.allreduce(n, 8, TOPO, "best") <= sm.allreduce(n, 8, TOPO, "ring")


def test_buckets_are_ddps():
    """The model's bucket boundaries are the ones DDP's reducer makes for the same model."""
    from phalanx.distributed.local_backend import LocalProcessGroup
    from phalanx.distributed.reducer import FIRST_BUCKET_BYTES, assign_buckets, bucket_limits
    px.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(12)])
    params = list(model.parameters())[::-1]
    cap = 50_000
    real = assign_buckets(params, LocalProcessGroup(), bucket_limits(cap))
    prof = sm.Profile("m", 0, 1, 0, [(p.numel() * 4, i) for i, p in enumerate(params)])
    modelled = sm.buckets(prof, cap, FIRST_BUCKET_BYTES)
    assert [b for b, _ in modelled] == [sum(p.numel() * 4 for p in b.params) for b in real]


def test_overlap_timeline():
    # backward 10 ms; two buckets ready at 5 ms and 10 ms, each costing 4 ms to all-reduce
    prof = sm.Profile("m", forward=0.002, backward=0.010, optimizer=0.001,
                      grads=[(4e6, 0.005), (4e6, 0.010)])
    cost = lambda n, p, t, a: 0.004                                     # noqa: E731
    orig, sm.allreduce = sm.allreduce, cost
    try:
        overlapped, comm = sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0)
        serial, _ = sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, overlap=False)
    finally:
        sm.allreduce = orig
    assert comm == pytest.approx(0.008)
    assert overlapped == pytest.approx(0.002 + 0.014 + 0.001)   # 2nd starts at 10, ends at 14
    assert serial == pytest.approx(0.002 + 0.018 + 0.001)       # both after backward
    assert sm.step_time(prof, 1, TOPO)[0] == pytest.approx(prof.compute)


def test_cpu_bound_step():
    """Communication that keeps a core busy cannot be hidden where the worker has no core to
    spare: the step is at least the computation's CPU plus the transport's, over the cores."""
    prof = sm.Profile("m", forward=0.002, backward=0.010, optimizer=0.001,
                      grads=[(4e6, 0.005), (4e6, 0.010)])
    topo = sm.Topology("t", 1, sm.Link(1e-6, 1e10), sm.Link(1e-5, 1e9))
    free, _ = sm.step_time(prof, 2, topo, cap=4e6)
    spare = sm.Cpu(cores_per_worker=2, compute=0.013, comm_per_byte=1e-9)
    assert sm.step_time(prof, 2, topo, cap=4e6, cpu=spare)[0] == free
    # one core each, the transport busy 1 ns per byte: 13 ms + 8 ms, nothing hidden
    busy = sm.Cpu(cores_per_worker=1, compute=0.013, comm_per_byte=1e-9)
    assert sm.step_time(prof, 2, topo, cap=4e6, cpu=busy)[0] == pytest.approx(0.021)
    # two thirds of a core each (3 workers on 2 cores): everything 1.5x
    shared = sm.Cpu(cores_per_worker=2 / 3, compute=0.013, comm_per_byte=1e-9)
    assert sm.step_time(prof, 2, topo, cap=4e6, cpu=shared)[0] == pytest.approx(0.0315)
    # ... and, with a transport that costs little CPU, the computation alone takes 1.5x, then
    # the all-reduces follow it
    light = sm.Cpu(cores_per_worker=2 / 3, compute=0.013, comm_per_byte=1e-12)
    serial, comm = sm.step_time(prof, 2, topo, cap=4e6, cpu=light, overlap=False)
    assert serial == pytest.approx(1.5 * prof.compute + comm)
    assert sm.step_time(prof, 1, topo, cpu=busy)[0] == pytest.approx(prof.compute)
    # the slowest worker measured at 2x (the scheduler shares the cores unevenly): the step's
    # computation takes that long, whatever an even share would give; one worker: no effect
    straggling = sm.Cpu(cores_per_worker=2 / 3, compute=0.013, comm_per_byte=1e-12,
                        slowest=2 * prof.compute)
    serial, comm = sm.step_time(prof, 2, topo, cap=4e6, cpu=straggling, overlap=False)
    assert serial == pytest.approx(2 * prof.compute + comm)
    assert sm.step_time(prof, 1, topo, cpu=straggling)[0] == pytest.approx(prof.compute)


def test_all_reduce_beside_backward_moves_at_the_measured_speed():
    # one bucket ready at 5 ms of a 10 ms backward, 4 ms to all-reduce alone, twice as long
    # beside backward: by 10 ms it has done 2.5 ms of its work, the last 1.5 ms run alone
    prof = sm.Profile("m", forward=0.0, backward=0.010, optimizer=0.0, grads=[(4e6, 0.005)])
    orig, sm.allreduce = sm.allreduce, lambda n, p, t, a: 0.004
    try:
        slow = sm.Cpu(cores_per_worker=1, compute=0.0, comm_per_byte=0.0, beside=2.0)
        assert sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=slow)[0] == \
            pytest.approx(0.0115)
        # after backward (no overlap) it runs at full speed
        assert sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=slow,
                            overlap=False)[0] == pytest.approx(0.014)
        # backward at half speed beside it: the 5 ms it overlaps push backward's end to
        # 12.5 ms, where the all-reduce (2.5 ms done, 1.5 ms left) ends at 11.5: backward last
        shared = sm.Cpu(cores_per_worker=1, compute=0.0, comm_per_byte=0.0, beside=2.0,
                        computation_beside=2.0)
        assert sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=shared)[0] == \
            pytest.approx(0.0125)
        # without overlap nothing runs beside backward
        assert sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=shared,
                            overlap=False)[0] == pytest.approx(0.014)
    finally:
        sm.allreduce = orig


def test_published_horovod_results_within_ten_points():
    for prof, topo, algo, cap, workers, reported, _ in sm.PUBLISHED:
        if reported is not None:
            eff = sm.efficiency(prof, workers, topo, algo=algo, cap=cap)
            assert abs(eff - reported) < 0.10, (prof.name, eff, reported)


def test_measure_records_every_gradient_in_arrival_order():
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    prof = sm.measure(model, px.randn(32, 8), lambda y: y.square().mean(), repeats=3)
    # each layer's bias arrives before its weight, the last layer's first: the parameters
    # reversed, the order DDP starts its buckets from
    assert [b for b, _ in prof.grads] == [4 * p.numel() for p in model.parameters()][::-1]
    times = [t for _, t in prof.grads]
    assert times == sorted(times) and 0 < times[-1] <= prof.backward


def test_buckets_of_a_measured_profile_are_ddps():
    """The model's buckets are the reducer's, each launched when its last gradient is
    ready."""
    from phalanx.distributed.local_backend import LocalProcessGroup
    from phalanx.distributed.reducer import assign_buckets
    px.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(4)])
    prof = sm.measure(model, px.randn(32, 64), lambda y: y.square().mean(), repeats=3)
    cap = 64 * 64 * 4
    real = assign_buckets(list(model.parameters())[::-1], LocalProcessGroup(), [cap])
    modelled = sm.buckets(prof, cap, cap)
    assert [b for b, _ in modelled] == [sum(p.numel() * 4 for p in b.params) for b in real]
    assert [t for _, t in modelled] == [t for _, t in prof.grads[1::2]]


def test_every_all_reduce_costs_its_call_cpu():
    """Where the step is CPU-bound, each bucket's all-reduce adds the CPU of one call: DDP's
    two buckets cost one call more than a single all-reduce after backward."""
    prof = sm.Profile("m", forward=0.002, backward=0.010, optimizer=0.001,
                      grads=[(4e6, 0.005), (4e6, 0.010)])
    topo = sm.Topology("t", 1, sm.Link(1e-6, 1e10), sm.Link(1e-5, 1e9))
    cpu = sm.Cpu(cores_per_worker=1, compute=0.013, comm_per_byte=1e-9, comm_per_call=0.001)
    assert sm.step_time(prof, 2, topo, cap=4e6, cpu=cpu)[0] == pytest.approx(0.023)
    assert sm.step_time(prof, 2, topo, cap=1 << 60, overlap=False, cpu=cpu,
                        first_cap=1 << 60)[0] == pytest.approx(0.022)


def test_ddp_passes_over_the_gradients_lengthen_the_step():
    """AVG's division follows each bucket's all-reduce (hidden where backward outlasts it),
    the copy of the averaged gradients out of the buckets follows the last one."""
    prof = sm.Profile("m", forward=0.0, backward=0.010, optimizer=0.0,
                      grads=[(4e6, 0.002), (4e6, 0.010)])
    orig, sm.allreduce = sm.allreduce, lambda n, p, t, a: 0.001
    try:
        base = sm.Cpu(cores_per_worker=1, compute=0.0, comm_per_byte=0.0)
        assert sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=base)[0] == \
            pytest.approx(0.011)
        # 1 ms of division per bucket: the first one's hides in backward, the last one's not;
        # 0.5 ms of copying out after it
        passes = sm.Cpu(cores_per_worker=1, compute=0.0, comm_per_byte=0.0,
                        average_per_byte=1e-3 / 4e6, unpack_per_byte=0.25e-3 / 4e6)
        step, comm = sm.step_time(prof, 2, TOPO, cap=4e6, per_bucket=0, cpu=passes)
        assert (step, comm) == (pytest.approx(0.0125), pytest.approx(0.004))
        # one worker reduces nothing
        assert sm.step_time(prof, 1, TOPO, cpu=passes)[0] == pytest.approx(prof.compute)
    finally:
        sm.allreduce = orig
