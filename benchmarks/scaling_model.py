"""An alpha-beta model of a data-parallel training step, and what it predicts past one machine.

    python benchmarks/scaling_model.py                      # table (and --plot FILE.png)
    python benchmarks/scaling_model.py --published          # vs PyTorch DDP's and Horovod's papers
    python benchmarks/scaling_model.py --buckets            # bucket size: 25 MB vs the optimum
    python benchmarks/scaling_model.py --validate FILE.json # vs benchmarks/multinode_step.py

The step of one worker is forward, backward and the optimizer. DDP cuts the gradients into
buckets in backward order (the first one small, the rest `cap` bytes); a bucket is ready when
backward produced its last gradient, and the buckets' all-reduces run one after another on the
communication channel, each starting when it is ready and the previous one is done. The step
ends when both backward and the last all-reduce ended; without overlap every all-reduce waits
for the end of backward. An all-reduce of n bytes over P workers costs, with a link's latency
alpha and bandwidth beta:

    ring           2 (P-1) alpha + 2 (P-1)/P n / beta
    tree           2 log2(P) alpha + 2 n / beta                  (pipelined double binary tree)
    hierarchical   within each node of L workers a reduce-scatter and, at the end, an
                   all-gather over the intra-node links; across the H nodes, L rings run at
                   once, each over n/L bytes, sharing the node's network link

plus a fixed cost per bucket (the framework launching it); `best` takes the cheapest
algorithm, as NCCL's tuner would. Where the workers' transport runs on their own cores (CPU
workers over TCP or MPI, `Cpu`), computation on less than a core each runs at that share, the
step takes at least the CPU time of its computation and its communication over the cores each
worker has (overlap hides only the communication that waits on the wire, not the part that
keeps a core busy), and an all-reduce beside backward moves at the speed measured beside a
computation that holds the core while backward beside it runs at the speed measured beside an
all-reduce. Where the slowest worker's computation was measured (all starting together), the
step's computation takes that long: the step waits for the slowest.
Scaling efficiency is the one-worker step (no communication) over the P-worker step, for the
same per-worker batch (weak scaling, as both papers report it).

Per-bucket backward times come from a profile: measured from a real Phalanx run (`measure`:
the time each parameter's gradient became ready), or derived from a layer table (parameters
and FLOPs per layer) and a device's sustained FLOP rate, which is how the published models
are described below.
"""
import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field

MB = 1 << 20
DDP_BUCKET = 25 * MB
DDP_FIRST_BUCKET = 1 * MB
LAUNCH = 50e-6          # a framework's fixed cost per bucket all-reduce (launch, bookkeeping)


# --- hardware ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    alpha: float          # seconds per message
    beta: float           # bytes per second (achieved, not line rate)


@dataclass(frozen=True)
class Topology:
    name: str
    per_node: int         # workers per node
    intra: Link           # between workers of a node (NVLink, PCIe, shared memory)
    inter: Link           # each node's network link


def gbit(g, efficiency=0.8):
    """A network link of `g` Gbit/s, of which TCP/RDMA achieves `efficiency`."""
    return g * 1e9 / 8 * efficiency


@dataclass(frozen=True)
class Cpu:
    """The workers' own cores, where they bound the step: a CPU worker's computation and its
    transport's work (kernel TCP copies, MPI polling) share `cores_per_worker`, so overlap
    cannot hide communication that costs CPU. (GPU workers over NCCL/RDMA: leave it out.)"""
    cores_per_worker: float
    compute: float          # CPU seconds of one step's forward, backward and optimizer
    comm_per_byte: float    # CPU seconds the transport spends per gradient byte all-reduced
    beside: float = 1.0     # how much longer an all-reduce takes while backward holds the core
    comm_per_call: float = 0.0  # CPU seconds of one all-reduce, whatever its size (hand-offs
    #                             between threads, messages): DDP pays it once per bucket
    slowest: float = 0.0  # seconds of the slowest worker's computation when all start it
    #                       together (0: unknown, take an even share of the cores)
    computation_beside: float = 1.0  # how much longer computation takes beside an all-reduce
    average_per_byte: float = 0.0  # DDP's own passes over the gradients, beside the transport:
    unpack_per_byte: float = 0.0   # AVG's division after each bucket's all-reduce, and the
    #                                copy of the averaged gradients out of the buckets at the end


# --- profiles ---------------------------------------------------------------------------
@dataclass
class Profile:
    """One worker's step: forward, backward and optimizer seconds, and each gradient's size
    in bytes with the time after the start of backward at which it is ready, in the order
    they arrive (the order DDP fills its buckets in once it has rebuilt them, from its second
    step)."""
    name: str
    forward: float
    backward: float
    optimizer: float
    grads: list = field(default_factory=list)     # [(bytes, ready seconds)], arrival order

    @property
    def nbytes(self):
        return sum(b for b, _ in self.grads)

    @property
    def compute(self):
        return self.forward + self.backward + self.optimizer

    def stretched(self, factor):
        """This profile slowed down by `factor` (when > 1), as on a share of a core."""
        if factor <= 1:
            return self
        return Profile(self.name, self.forward * factor, self.backward * factor,
                       self.optimizer * factor, [(b, t * factor) for b, t in self.grads])


def from_layers(name, layers, batch, flops_per_s=None, samples_per_s=None, bytes_per_param=4,
                optimizer_bw=400e9):
    """A profile from a layer table [(params, forward FLOPs per sample)] in forward order.
    Backward costs twice the forward FLOPs, the optimizer streams ~16 bytes per parameter, and
    time comes from a sustained FLOP rate, or is scaled so that forward + backward processes
    `samples_per_s` (a published single-GPU throughput)."""
    total = 3 * sum(f for _, f in layers) * batch
    rate = flops_per_s if samples_per_s is None else total * samples_per_s / batch
    forward = sum(f for _, f in layers) * batch / rate
    grads, t = [], 0.0
    for params, flops in reversed(layers):
        t += 2 * flops * batch / rate
        if params:
            grads.append((params * bytes_per_param, t))
    params = sum(p for p, _ in layers)
    return Profile(name, forward, t, 16 * params / optimizer_bw, grads)


def measure(model, inputs, loss_fn, repeats=5):
    """A profile of `model` (a phalanx Module) measured in this process: median over repeats of
    forward, backward, an SGD step, and the time each parameter's gradient was ready, in the
    order they arrived."""
    import phalanx as px
    params = [p for p in model.parameters() if p.requires_grad]
    opt = px.optim.SGD(params, lr=1e-3, momentum=0.9)
    runs = []
    for _ in range(repeats + 1):
        ready = {}
        def seen(i):
            def hook(grad):
                ready.setdefault(i, time.perf_counter())     # returns None: grad unchanged
            return hook
        handles = [p.register_hook(seen(i)) for i, p in enumerate(params)]
        opt.zero_grad()
        t0 = time.perf_counter()
        loss = loss_fn(model(inputs))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        for h in handles:
            h.remove()
        order = sorted(range(len(params)), key=lambda i: ready.get(i, t2))
        runs.append((t1 - t0, t2 - t1, t3 - t2,
                     [(params[i].numel() * params[i].element_size(), ready.get(i, t2) - t1)
                      for i in order]))
    runs = sorted(runs[1:], key=lambda r: r[0] + r[1] + r[2])   # the first one warms up
    f, b, o, grads = runs[len(runs) // 2]
    return Profile(type(model).__name__, f, b, o, grads)


# --- communication ----------------------------------------------------------------------
def ring(n, p, link):
    return 0.0 if p == 1 else 2 * (p - 1) * link.alpha + 2 * (p - 1) / p * n / link.beta


def tree(n, p, link):
    return 0.0 if p == 1 else 2 * math.log2(p) * link.alpha + 2 * n / link.beta


def allreduce(n, workers, topo, algo="hierarchical"):
    """Seconds to all-reduce n bytes over `workers` laid out `topo.per_node` to a node."""
    local = min(workers, topo.per_node)
    nodes = math.ceil(workers / local)
    if algo == "ring":            # one ring through every worker, nodes in a row: each node's
        # link carries the ring's traffic once each way; inside, the hops are intra-node
        if nodes == 1:
            return ring(n, local, topo.intra)
        return max(ring(n, workers, topo.inter), ring(n, workers, topo.intra))
    if algo == "tree":
        return tree(n, nodes, topo.inter) + (ring(n, local, topo.intra) if local > 1 else 0.0)
    if algo == "best":
        return min(allreduce(n, workers, topo, a) for a in ("ring", "tree", "hierarchical"))
    # hierarchical: reduce-scatter and all-gather in the node, L rings of n/L across nodes
    inside = ring(n, local, topo.intra)              # = reduce-scatter + all-gather
    across = 0.0
    if nodes > 1:
        across = 2 * (nodes - 1) * topo.inter.alpha + \
            2 * (nodes - 1) / nodes * n / topo.inter.beta   # L rings share the node's link
    return inside + across


def buckets(profile, cap=DDP_BUCKET, first_cap=DDP_FIRST_BUCKET):
    """DDP's buckets: [(bytes, seconds after backward started when it launches)]; each closes
    once it holds at least its cap, and launches when all its gradients are ready and the
    buckets before it have launched."""
    out, size, ready, limit = [], 0, 0.0, min(first_cap, cap)
    for nbytes, t in profile.grads:
        size, ready = size + nbytes, max(ready, t)
        if size >= limit:
            out.append((size, ready))
            size, limit = 0, cap
    if size:
        out.append((size, ready))
    return out


def step_time(profile, workers, topo, algo="hierarchical", cap=DDP_BUCKET, overlap=True,
              per_bucket=LAUNCH, cpu=None, first_cap=DDP_FIRST_BUCKET):
    """Predicted seconds per step on `workers` workers, and the all-reduce seconds in it.
    With `cpu`, computation on less than a core each runs at that share, and the step takes at
    least the CPU its computation and communication need over the cores each worker has.
    `first_cap=cap` (with an unbounded cap: one all-reduce of everything) models buckets
    without DDP's small first one."""
    if cpu is not None and workers > 1 and cpu.slowest:
        profile = profile.stretched(cpu.slowest / profile.compute)   # every step waits for it
    elif cpu is not None and workers > 1 and cpu.cores_per_worker < 1:
        profile = profile.stretched(cpu.compute / cpu.cores_per_worker / profile.compute)
    slow = cpu.beside if cpu is not None else 1.0
    held = 1.0 - 1.0 / cpu.computation_beside if cpu is not None else 0.0
    comm_end, total, late = 0.0, 0.0, 0.0      # late: how far backward has been pushed back
    parts = buckets(profile, cap, first_cap)
    for nbytes, ready in parts:
        backward_end = profile.backward + late
        start = max(ready + late if overlap else backward_end, comm_end)
        cost = per_bucket + allreduce(nbytes, workers, topo, algo)
        if cpu is not None:
            cost += cpu.average_per_byte * nbytes
        # while backward runs, the transport moves at 1/slow of its speed alone, and backward
        # loses the share of its core the transport takes
        during = min(cost * slow, max(backward_end - start, 0.0))
        comm_end, total = start + during + cost - during / slow, total + cost
        late += during * held
    if workers == 1:
        comm_end = total = late = 0.0
    unpack = cpu.unpack_per_byte * profile.nbytes if cpu is not None and workers > 1 else 0.0
    step = profile.forward + max(profile.backward + late, comm_end) + unpack + profile.optimizer
    if cpu is not None and workers > 1:
        local = cpu.average_per_byte + cpu.unpack_per_byte + cpu.comm_per_byte
        busy = cpu.compute + local * profile.nbytes + cpu.comm_per_call * len(parts)
        step = max(step, busy / cpu.cores_per_worker)
    return step, total


def efficiency(profile, workers, topo, **kw):
    return profile.compute / step_time(profile, workers, topo, **kw)[0]


# --- published models and clusters ------------------------------------------------------
def _conv(cin, cout, k, hw):
    return (cin * cout * k * k + 2 * cout, 2 * cin * cout * k * k * hw * hw)


def resnet_layers(blocks):
    """ResNet-50/101/152 (bottleneck blocks per stage), 224x224 input."""
    layers = [_conv(3, 64, 7, 112)]
    cin = 64
    for stage, (n, hw) in enumerate(zip(blocks, (56, 28, 14, 7))):
        width = 64 << stage
        for i in range(n):
            layers += [_conv(cin, width, 1, hw), _conv(width, width, 3, hw),
                       _conv(width, 4 * width, 1, hw)]
            if i == 0:
                layers.append(_conv(cin, 4 * width, 1, hw))      # projection shortcut
            cin = 4 * width
    return layers + [(2048 * 1000 + 1000, 2 * 2048 * 1000)]


def vgg16_layers():
    layers, cin, hw = [], 3, 224
    for cout in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                 512, 512, 512, "M"):
        if cout == "M":
            hw //= 2
        else:
            layers.append((cin * cout * 9 + cout, 2 * cin * cout * 9 * hw * hw))  # no BN
            cin = cout
    return layers + [(25088 * 4096 + 4096, 2 * 25088 * 4096), (4096 * 4096 + 4096, 2 * 4096 ** 2),
                     (4096 * 1000 + 1000, 2 * 4096 * 1000)]


def inception_v3_layers():
    """Inception V3 by block (23.8 M parameters, 5.7 GFLOPs at 299x299): per-block parameter
    and FLOP counts, approximated from the block structure (stem, 3 x 35x35, reduction, 4 x
    17x17, reduction, 2 x 8x8, classifier)."""
    blocks = [(0.46e6, 2.2e9), (0.26e6, 0.48e9), (0.28e6, 0.53e9), (0.29e6, 0.55e9),
              (1.15e6, 0.38e9), (1.3e6, 0.37e9), (1.7e6, 0.46e9), (1.7e6, 0.46e9),
              (2.1e6, 0.54e9), (1.7e6, 0.22e9), (5.0e6, 0.26e9), (6.1e6, 0.30e9),
              (2.05e6, 4.1e6)]
    return [(int(p), f) for p, f in blocks]


def bert_layers(n_layers, hidden, seq, vocab=30522):
    """BERT encoder: embeddings, then n_layers of attention + MLP (4x) per token of `seq`."""
    per_layer = 12 * hidden * hidden + 13 * hidden
    emb = (vocab + 512 + 2) * hidden + 2 * hidden
    flops = seq * (2 * per_layer + 4 * seq * hidden)      # weights plus attention scores
    return [(emb, 2 * seq * hidden)] + [(per_layer, flops)] * n_layers + \
        [(hidden * hidden + hidden, 2 * seq * hidden * hidden)]


# Clusters as the papers describe them; bandwidths are achieved (80% of line rate).
DDP_PAPER = Topology("PyTorch DDP paper: 8 V100 per node (NVLink), 100 Gbit/s InfiniBand",
                     8, Link(5e-6, 120e9), Link(10e-6, gbit(100)))
HOROVOD = Topology("Horovod paper: 4 P100 per node (PCIe), 25 Gbit/s RoCE",
                   4, Link(10e-6, 10e9), Link(20e-6, gbit(25)))
V100, P100 = 7.5e12, 5.0e12             # sustained fp32 FLOP/s in training (~55% of peak)

PUBLISHED = [
    # (profile, topology, algorithm, bucket cap, workers, reported efficiency or None, note)
    (from_layers("ResNet-50", resnet_layers((3, 4, 6, 3)), 32, V100), DDP_PAPER, "ring",
     DDP_BUCKET, 256, None, "near-linear to 256 GPUs"),
    (from_layers("BERT-base", bert_layers(12, 768, 128), 32, V100), DDP_PAPER, "ring",
     DDP_BUCKET, 256, None, "near-linear to 256 GPUs"),
    (from_layers("BERT-large", bert_layers(24, 1024, 128), 16, V100), DDP_PAPER, "ring",
     DDP_BUCKET, 256, None, "near-linear to 256 GPUs"),
    # Horovod ran tf_cnn_benchmarks at batch 64 per GPU: compute from the single-P100
    # throughputs TensorFlow published for that benchmark (images/s, approximate)
    (from_layers("Inception V3", inception_v3_layers(), 64, samples_per_s=142), HOROVOD, "ring",
     64 * MB, 512, 0.90, "about 90% at 512 GPUs"),
    (from_layers("ResNet-101", resnet_layers((3, 4, 23, 3)), 64, samples_per_s=140), HOROVOD,
     "ring", 64 * MB, 512, 0.90, "about 90% at 512 GPUs"),
    (from_layers("VGG-16", vgg16_layers(), 64, samples_per_s=154), HOROVOD, "ring",
     64 * MB, 512, 0.68, "68% at 512 GPUs"),
]


def published_table():
    rows = ["| model | params | step (1 worker) | cluster | workers | predicted | reported |",
            "|---|---|---|---|---|---|---|"]
    for prof, topo, algo, cap, p, reported, note in PUBLISHED:
        eff = efficiency(prof, p, topo, algo=algo, cap=cap)
        rows.append(f"| {prof.name} | {prof.nbytes / 4e6:.1f} M | {prof.compute * 1e3:.0f} ms | "
                    f"{topo.name.split(':')[0]} | {p} | {eff:.0%} | {note} |")
    return "\n".join(rows)


def best_bucket(profile, workers, topo, algo="hierarchical"):
    """The best `bucket_cap_mb` and the step with each; a cap given to PyTorch 2.13's DDP
    caps its first bucket too (only the default has a 1 MB first one)."""
    caps = [c * MB for c in (1, 2, 5, 10, 25, 50, 100, 200)]
    times = {c: step_time(profile, workers, topo, algo, c, first_cap=c)[0] for c in caps}
    return min(times, key=times.get), times


def bucket_table(workers=64):
    rows = ["| model | cluster | workers | step with DDP's default | best cap | step with it |",
            "|---|---|---|---|---|---|"]
    for prof, topo, algo, *_ in PUBLISHED:
        cap, times = best_bucket(prof, workers, topo, algo)
        default = step_time(prof, workers, topo, algo)[0]
        rows.append(f"| {prof.name} | {topo.name.split(':')[0]} | {workers} | "
                    f"{default * 1e3:.1f} ms | {cap // MB} MB | {times[cap] * 1e3:.1f} ms |")
    return "\n".join(rows)


def hierarchy_table(workers=(8, 64, 512)):
    topo = DDP_PAPER
    rows = ["| model | workers | flat ring | hierarchical | gain |", "|---|---|---|---|---|"]
    for prof, *_ in PUBLISHED:
        for p in workers:
            flat = efficiency(prof, p, topo, algo="ring")
            hier = efficiency(prof, p, topo, algo="hierarchical")
            rows.append(f"| {prof.name} | {p} | {flat:.1%} | {hier:.1%} | "
                        f"{(hier / flat - 1):+.1%} |")
    return "\n".join(rows)


# --- the examples' models on a reference cluster ------------------------------------------
REFERENCE = Topology("reference: 8 GPUs per node (NVLink, 150 GB/s), 100 Gbit/s InfiniBand",
                     8, Link(5e-6, 150e9), Link(10e-6, gbit(100)))
WORKERS = (1, 2, 8, 16, 64, 128, 256, 512, 1024)


def _example(name):
    """The module examples/<name>.py (the examples folder is not a package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    sys.path.insert(0, str(path.parent))          # examples import their shared helpers
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_profiles(speedup=1.0):
    """Profiles of the examples' models at their default per-rank batch, measured here with
    Phalanx on the CPU, compute divided by `speedup` (the reference GPU's speed over this
    CPU's), plus a larger MLP for contrast."""
    import phalanx as px
    from phalanx import nn
    from phalanx.nn import functional as F
    px.manual_seed(0)

    def classify(classes):
        return lambda y: F.cross_entropy(y.reshape(-1, classes),
                                         px.zeros(y.numel() // classes, dtype=px.int64))

    gpt = _example("transformer_lm").GPT(vocab_size=80, block=64, dim=96, layers=3, heads=4)
    models = [
        ("digits CNN (ddp_digits, batch 32)", _example("ddp_digits").build_model(),
         px.randn(32, 1, 8, 8), classify(10)),
        ("ResNet (resnet_mnist, batch 32)", _example("resnet_mnist").ResNet(8),
         px.randn(32, 1, 28, 28), classify(10)),
        ("char GPT (transformer_lm, batch 32)", gpt, px.randint(0, 80, (32, 64)), classify(80)),
        ("VAE (vae_digits, batch 64)", _example("vae_digits").VAE(),
         px.randn(64, 1, 8, 8), lambda out: sum(o.square().mean() for o in out
                                                 if isinstance(o, px.Tensor))),
        ("MLP 1024-4096-4096-1000 (batch 256)",
         nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                       nn.Linear(4096, 1000)), px.randn(256, 1024), classify(1000)),
    ]
    out = []
    for name, model, x, loss in models:
        prof = measure(model, x, loss)
        prof.name = name
        prof.forward, prof.backward, prof.optimizer = (prof.forward / speedup,
                                                       prof.backward / speedup,
                                                       prof.optimizer / speedup)
        prof.grads = [(b, t / speedup) for b, t in prof.grads]
        out.append(prof)
    return out


def efficiency_table(profiles, topo=REFERENCE, workers=WORKERS):
    head = "| model | grads | step | " + " | ".join(str(p) for p in workers[1:]) + " |"
    rows = [head, "|" + "---|" * (len(workers) + 2)]
    for prof in profiles:
        effs = [efficiency(prof, p, topo) for p in workers[1:]]
        rows.append(f"| {prof.name} | {prof.nbytes / MB:.1f} MB | {prof.compute * 1e3:.2f} ms | " +
                    " | ".join(f"{e:.0%}" for e in effs) + " |")
    return "\n".join(rows)


def plot(profiles, path, topo=REFERENCE, workers=WORKERS, note=""):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for prof in profiles:
        ax.plot(workers, [efficiency(prof, p, topo) for p in workers], marker="o", label=prof.name)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("workers")
    ax.set_ylabel("scaling efficiency (weak scaling)")
    ax.set_title(topo.name + note, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- validation against measurements on the namespace cluster ---------------------------
def validate(path):
    """Compare predictions with benchmarks/multinode_step.py's measurements: each record holds
    the measured profile (1 worker), the topology it ran on and the measured step times."""
    records = json.loads(open(path).read())
    rows = ["| case | workers | measured | predicted | error |", "|---|---|---|---|---|"]
    worst = 0.0
    for r in records:
        prof = Profile(r["model"], r["forward"], r["backward"], r["optimizer"],
                       [tuple(g) for g in r["grads"]])
        topo = Topology(r["topology"], r["per_node"], Link(*r["intra"]), Link(*r["inter"]))
        cpu = Cpu(**r["cpu"]) if "cpu" in r else None
        # DDP's buckets there are 1 MB, its first one too; after backward: one all-reduce
        pred, _ = step_time(prof, r["workers"], topo, r["algo"], r["cap"], r["overlap"], cpu=cpu,
                            first_cap=r["cap"])
        err = pred / r["measured"] - 1
        worst = max(worst, abs(err))
        rows.append(f"| {r['case']} | {r['workers']} | {r['measured'] * 1e3:.1f} ms | "
                    f"{pred * 1e3:.1f} ms | {err:+.0%} |")
    return "\n".join(rows), worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--published", action="store_true")
    p.add_argument("--buckets", action="store_true")
    p.add_argument("--hierarchy", action="store_true")
    p.add_argument("--validate", metavar="FILE.json")
    p.add_argument("--speedup", type=float, default=20.0,
                   help="reference GPU speed over this CPU for the examples' models (default 20)")
    p.add_argument("--plot", metavar="FILE.png")
    args = p.parse_args(argv)
    if args.published:
        print(published_table())
    if args.buckets:
        print(bucket_table())
    if args.hierarchy:
        print(hierarchy_table())
    if args.validate:
        table, worst = validate(args.validate)
        print(table)
        print(f"worst error {worst:.0%}")
    if not (args.published or args.buckets or args.hierarchy or args.validate):
        profiles = example_profiles(args.speedup)
        print(efficiency_table(profiles))
        if args.plot:
            plot(profiles, args.plot,
                 note=f"\ncompute: Phalanx on a 2-vCPU EPYC, divided by {args.speedup:g}")
            print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
