"""What the two digits examples share: the argument parser, the training loop and accuracy.

The examples import it as a sibling module (`python examples/digits_mlp.py` puts this folder on
the import path).
"""
import argparse
import time

from tqdm import tqdm

import phalanx as px
from phalanx import nn
from phalanx.data import DataLoader
from phalanx.data.datasets import load_digits


def accuracy(model, loader):
    model.eval()
    correct = total = 0
    with px.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    model.train()
    return correct / total


def parser(description, epochs, checkpoint):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=checkpoint)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def train(build_model, args):
    """Train `build_model()` on the digits as `args` says; returns the final test accuracy."""
    px.manual_seed(args.seed)
    train_set, test_set = load_digits()
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                              num_workers=args.workers)
    train_eval_loader = DataLoader(train_set, batch_size=512)
    test_loader = DataLoader(test_set, batch_size=512)

    model = build_model(args)
    optimizer = px.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = px.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                        T_max=args.epochs * len(train_loader))
    loss_fn = nn.CrossEntropyLoss()
    print(f"digits: {len(train_set)} train / {len(test_set)} test images; "
          f"{sum(p.numel() for p in model.parameters())} parameters")

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total_loss, seen = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{args.epochs}", leave=False,
                   disable=args.no_progress)
        for x, y in bar:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        train_acc, test_acc = accuracy(model, train_eval_loader), accuracy(model, test_loader)
        tqdm.write(f"epoch {epoch:3d}  loss {total_loss / seen:.4f}  train acc {train_acc:.4f}"
                   f"  test acc {test_acc:.4f}  ({time.perf_counter() - start:.1f}s)")

    px.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": args.epochs,
             "test_accuracy": test_acc, "rng_state": px.get_rng_state()}, args.checkpoint)
    print(f"final test accuracy {test_acc:.4f} after {args.epochs} epochs in "
          f"{time.perf_counter() - start:.1f}s; checkpoint saved to {args.checkpoint}")
    return test_acc
