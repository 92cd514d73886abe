"""Graphs: a graph convolutional network classifying the members of Zachary's karate club,
trained data-parallel, with message passing written on `index_select` and `scatter_add` as
PyTorch Geometric does.

    python examples/gcn_karate.py                                     # one process
    mpirun -n 2 python examples/gcn_karate.py                         # MPI
    phalanx run --standalone --nproc-per-node 2 examples/gcn_karate.py
    ... --resume                                    # continue from the last checkpoint

Data: Zachary's karate club (W. W. Zachary, "An information flow model for conflict and fission
in small groups", 1977), as `networkx.karate_club_graph()` ships it (networkx is BSD-3; the
graph is a published scientific observation): 34 members, 78 friendships, and the club each
member joined when the club split ("Mr. Hi" or "Officer"), the label to predict. A seeded
stratified split labels `--train-per-class` members of each club (4 by default) for training;
the other 26 are the test set. Node features are one-hot identities, as in Kipf & Welling
(2017), so all the model knows about a member is who they are friends with.

Model (Kipf & Welling, 2017): two graph-convolution layers, H' = D^-1/2 (A + I) D^-1/2 H W + b,
with ReLU and dropout between. A layer multiplies the node features by W, then passes
messages: for every edge (self-loops added) the source's row, scaled by the edge's
normalisation 1/sqrt(deg(src) deg(dst)), is gathered with `index_select` and summed into the
destination's row with `scatter_add` -- the gather/scatter pattern of PyTorch Geometric's
`MessagePassing` (PyTorch's `index_add_` is the same sum; Phalanx has `scatter_add`). Adam with
weight decay; full-graph training (one step per epoch).

Each rank computes the whole (tiny) graph and the loss on its `DistributedSampler` shard of the
labelled members; `DistributedDataParallel` averages the gradients. Rank 0 prints the loss and
test accuracy every 20 epochs and saves a checkpoint with `px.save` then (`--resume`
continues from it exactly).

Quality (measured on 2 CPU cores, one process): with 4 labelled members per club, the
defaults (200 epochs) classify 24 or 25 of the 26 others correctly (92-96%, seeds 0-4) in under
a second; the test uses the defaults.
"""
import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler
from phalanx.nn import functional as F

from ddp_common import Run, parser


def load_karate(train_per_class, seed):
    """(edge_index (2, E) with both directions of every friendship, labels (34,), train
    member ids, test member ids)."""
    try:
        import networkx as nx
    except ImportError as e:
        raise ImportError("the karate club graph ships with networkx: "
                          "pip install 'phalanx[examples]' (or pip install networkx)") from e
    graph = nx.karate_club_graph()
    labels = np.array([0 if graph.nodes[i]["club"] == "Mr. Hi" else 1 for i in graph.nodes])
    edges = np.array(graph.edges, dtype=np.int64).T
    edge_index = np.concatenate([edges, edges[::-1]], axis=1)
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:train_per_class]
                            for c in (0, 1)])
    test = np.setdiff1d(np.arange(len(labels)), train)
    return edge_index, labels, np.sort(train), test


class GCNConv(nn.Module):
    """One graph convolution: x W, then each node sums its neighbours' (and its own) rows,
    each scaled by 1/sqrt(deg(src) deg(dst)); then + b."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(px.zeros(out_features))

    def forward(self, x, edge_index):
        n = x.shape[0]
        loops = px.arange(n)
        src = px.cat([edge_index[0], loops])
        dst = px.cat([edge_index[1], loops])
        degree = px.zeros(n).scatter_add(0, dst, px.ones(len(dst)))
        norm = (degree.index_select(0, src) * degree.index_select(0, dst)).rsqrt()
        h = self.linear(x)
        messages = h.index_select(0, src) * norm[:, None]            # gather: one row per edge
        index = dst[:, None].expand(-1, h.shape[1])
        out = px.zeros(n, h.shape[1]).scatter_add(0, index, messages)  # scatter: sum per node
        return out + self.bias


class GCN(nn.Module):
    def __init__(self, in_features, hidden, classes, dropout=0.5):
        super().__init__()
        self.conv1 = GCNConv(in_features, hidden)
        self.conv2 = GCNConv(hidden, classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index):
        h = F.relu(self.conv1(self.dropout(x), edge_index))
        return self.conv2(self.dropout(h), edge_index)


def main(argv=None):
    p = parser(__doc__.split("\n")[0], checkpoint="gcn_karate.ckpt")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--train-per-class", type=int, default=4, help="labelled members per club")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--report-every", type=int, default=20, help="epochs between reports and "
                   "checkpoints")
    args = p.parse_args(argv)
    run = Run(args)

    edge_index, labels, train, test = load_karate(args.train_per_class, args.seed)
    edge_index, labels = px.tensor(edge_index), px.tensor(labels)
    features = px.eye(len(labels))
    sampler = DistributedSampler(train.tolist(), shuffle=True, seed=args.seed)
    # the whole shard of labelled members is one batch: full-graph training
    loader = DataLoader(train.tolist(), batch_size=len(train), sampler=sampler)

    px.manual_seed(args.seed)
    model = dist.DistributedDataParallel(GCN(len(labels), args.hidden, 2))
    optimizer = px.optim.Adam(model.parameters(), lr=args.lr, weight_decay=5e-4)
    start = 0
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    run.print(f"karate club: {len(labels)} members, {edge_index.shape[1] // 2} friendships; "
              f"{len(train)} labelled for training, {len(test)} to classify; "
              f"{sum(p.numel() for p in model.parameters())} parameters")

    def test_accuracy():  # every rank holds the whole graph: no need to shard the test set
        model.eval()
        with px.no_grad():
            predicted = model.module(features, edge_index).argmax(1)
        model.train()
        return (predicted[px.tensor(test)] == labels[px.tensor(test)]).float().mean().item()

    for epoch in run.progress(range(start, args.epochs), "training"):
        run.seed_epoch(epoch)
        sampler.set_epoch(epoch)
        (members,) = list(loader)
        loss = F.cross_entropy(model(features, edge_index)[members], labels[members])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (epoch + 1) % args.report_every == 0 or epoch + 1 == args.epochs:
            run.log(epoch + 1, loss=loss.item(), test_accuracy=test_accuracy())
            run.print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy "
                      f"{test_accuracy():.2%} ({run.elapsed():.1f} s)")
            if run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "epoch": epoch + 1}):
                break
    accuracy = test_accuracy()
    run.check_replicas(model)
    run.print(f"final test accuracy: {accuracy:.2%} ({round(accuracy * len(test))} of "
              f"{len(test)}) in {run.elapsed():.1f} s")
    run.finish()
    return accuracy


if __name__ == "__main__":
    main()
