"""Tabular / health: a small neural network telling malignant from benign breast tumours,
trained data-parallel with a validation split and early stopping.

    python examples/breast_cancer_mlp.py                              # one process
    mpirun -n 2 python examples/breast_cancer_mlp.py                  # MPI
    phalanx run --standalone --nproc-per-node 2 examples/breast_cancer_mlp.py
    ... --resume                                    # continue from the last checkpoint

Data: the Breast Cancer Wisconsin (Diagnostic) data set (Wolberg, Street & Mangasarian, 1995;
UCI, CC BY 4.0) as scikit-learn ships it (`sklearn.datasets.load_breast_cancer`, BSD-3; pip
install 'phalanx[examples]'): 569 tumours, 30 features of their cell nuclei measured from
images of fine-needle aspirates, 212 malignant and 357 benign. A seeded stratified split keeps
60% for training, 20% for validation (early stopping) and 20% for the final test. Each feature
is standardised with the mean and standard deviation of the training part alone, so nothing
about the validation and test tumours leaks into training; the scaler is saved in the
checkpoint with the model.

Model: an MLP 30 -> 32 -> 16 -> 2 with ReLU and dropout 0.2, cross-entropy, AdamW. Early
stopping: after every epoch the validation loss (summed over all ranks' shards) is compared
with the best so far; the best weights are kept, and training stops when `--patience` epochs
have passed without an improvement. The test set is scored once, with the best weights.

Each rank trains on its `DistributedSampler` shard; `DistributedDataParallel` averages the
gradients, and since every rank sees the same validation loss, all stop at the same epoch.
Rank 0 prints the losses every few epochs and saves a checkpoint with `px.save` after every
epoch (model, optimizer, best weights, patience left: `--resume` continues exactly).

Quality (measured on 2 CPU cores, one process): it stops early after 28-40 epochs and
classifies 96.5-99% of the 114 test tumours correctly (98.2% with seed 0; seeds 0-2), in 2-4 s;
the test uses the defaults.
"""
import copy

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler, TensorDataset
from phalanx.nn import functional as F

from ddp_common import Run, parser


def load_breast_cancer_splits(seed):
    """Standardised (train, validation, test) `TensorDataset`s and the scaler used: a dict
    of the feature names and their training means and standard deviations."""
    try:
        from sklearn.datasets import load_breast_cancer
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError("the breast cancer data set ships with scikit-learn: "
                          "pip install 'phalanx[examples]' (or pip install scikit-learn)") from e
    data = load_breast_cancer()
    features, labels = data.data, data.target
    x_train, x_rest, y_train, y_rest = train_test_split(
        features, labels, test_size=0.4, stratify=labels, random_state=seed)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0)  # from the training part only

    def dataset(x, y):
        return TensorDataset(px.tensor((x - mean) / std, dtype=px.float32), px.tensor(y))
    scaler = {"feature_names": [str(name) for name in data.feature_names],
              "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return dataset(x_train, y_train), dataset(x_val, y_val), dataset(x_test, y_test), scaler


def build_model(features=30, dropout=0.2):
    return nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(32, 16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, 2))


def score(run, model, dataset):
    """(mean loss, accuracy) over the whole dataset, each rank scoring its shard."""
    model.eval()
    loss = correct = 0.0
    with px.no_grad():
        for x, y in DataLoader(run.shard(dataset), batch_size=256):
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train()
    loss, correct, count = run.sum(loss, correct, len(run.shard(dataset)))
    return loss / count, correct / count


def main(argv=None):
    p = parser(__doc__.split("\n")[0], checkpoint="breast_cancer_mlp.ckpt")
    p.add_argument("--epochs", type=int, default=300, help="at most")
    p.add_argument("--patience", type=int, default=20, help="epochs without a better "
                   "validation loss before stopping")
    p.add_argument("--batch-size", type=int, default=16, help="per rank")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--report-every", type=int, default=10)
    args = p.parse_args(argv)
    run = Run(args)

    train_set, val_set, test_set, scaler = load_breast_cancer_splits(args.seed)
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    px.manual_seed(args.seed)
    model = dist.DistributedDataParallel(build_model())
    optimizer = px.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    start, best_loss, best_epoch, best_weights = 0, float("inf"), 0, None
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best_loss, best_epoch = state["epoch"], state["best_loss"], state["best_epoch"]
        best_weights = state["best_model"]
    run.print(f"breast cancer: {len(train_set)} train / {len(val_set)} validation / "
              f"{len(test_set)} test tumours, 30 features; "
              f"{sum(p.numel() for p in model.parameters())} parameters")

    done, patience_ran_out = start, False
    for epoch in range(start, args.epochs):
        if epoch - best_epoch >= args.patience:
            patience_ran_out = True  # (a run resumed after it had stopped stops again at once)
            break
        run.seed_epoch(epoch)
        sampler.set_epoch(epoch)
        for x, y in run.progress(loader, f"epoch {epoch + 1}"):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        done = epoch + 1
        val_loss, val_accuracy = score(run, model.module, val_set)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, done
            best_weights = copy.deepcopy(model.state_dict())
        if done % args.report_every == 0:
            run.log(done, validation_loss=val_loss, validation_accuracy=val_accuracy)
            run.print(f"epoch {done}: validation loss {val_loss:.4f}, accuracy "
                      f"{val_accuracy:.2%} (best loss {best_loss:.4f} at epoch {best_epoch}; "
                      f"{run.elapsed():.1f} s)")
        if run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "epoch": done, "best_model": best_weights, "best_loss": best_loss,
                     "best_epoch": best_epoch, "scaler": scaler}):
            break
    if patience_ran_out:
        run.print(f"early stop after epoch {done}: no better validation loss for "
                  f"{done - best_epoch} epochs")
    run.print(f"restoring the best weights, of epoch {best_epoch}")
    run.check_replicas(model)
    model.load_state_dict(best_weights)
    test_loss, test_accuracy = score(run, model.module, test_set)
    run.print(f"final test accuracy: {test_accuracy:.2%} (loss {test_loss:.4f}) with the "
              f"weights of epoch {best_epoch}, in {run.elapsed():.1f} s")
    run.finish()
    return test_accuracy


if __name__ == "__main__":
    main()
