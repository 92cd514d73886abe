"""Generative: a DCGAN trained data-parallel on scikit-learn's 8x8 handwritten digits, writing
a PNG of generated digits.

    python examples/dcgan_digits.py                                   # one process
    mpirun -n 2 python examples/dcgan_digits.py                       # MPI
    phalanx run --standalone --nproc-per-node 2 examples/dcgan_digits.py
    ... --resume                                    # continue from the last checkpoint
    ... --epochs 30                                 # the test's settings

Data: the 1797 8x8 digits that ship with scikit-learn (BSD-3; a copy of the UCI "Optical
Recognition of Handwritten Digits" test set, CC BY 4.0); the training 80% of each class
(`phalanx.data.datasets.load_digits`), scaled to [-1, 1].

Model (Radford et al., 2016, scaled down to 8x8): the generator maps z ~ N(0, I) (32
dimensions) through a linear layer to 64 x 2 x 2 and two stride-2 transposed convolutions
(BatchNorm and ReLU between) to a tanh image; the discriminator is two stride-2 convolutions
with LeakyReLU(0.2) and a linear layer giving one logit. Both learn with Adam (lr 1e-3, beta1
0.5) on the non-saturating loss: the discriminator step scores a batch of real images and a
batch of generated ones in one pass, the generator step asks the discriminator to call fresh
generated images real. The generator's BatchNorm is a `SyncBatchNorm`.

Both networks are wrapped in `DistributedDataParallel`; each rank reads its
`DistributedSampler` shard of real images and draws its own noise, and gradients are averaged
over ranks. Rank 0 prints both losses per epoch and how a logistic-regression digit
classifier (fitted on the training set, see image_grid.py) judges 500 samples: its mean
confidence, how many of the 10 classes they cover, and their "inception score" with that
classifier (10 at most; the real test digits score 6.3, at 87% confidence). It saves a
checkpoint with `px.save` after each epoch (`--resume` continues from it exactly) and writes
`--image` (default dcgan_digits.png; Pillow), 100 samples, at the end.

Quality (measured on 2 busy CPU cores, one process): the defaults (100 epochs) reach a score
of 4.9 (confidence 77%, all 10 classes) in about 2 minutes; the test's settings (30 epochs)
4.1 (70%, 10 classes) in about 30 s.
"""
import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler
from phalanx.data.datasets import load_digits
from phalanx.nn import functional as F

from ddp_common import Run, parser
from image_grid import digit_classifier, digit_score, save_grid


class Generator(nn.Module):
    def __init__(self, latent=32, width=32):
        super().__init__()
        self.latent = latent
        self.net = nn.Sequential(
            nn.Linear(latent, 2 * width * 2 * 2), nn.Unflatten(1, (2 * width, 2, 2)),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 2 * 2, 1))

    def forward(self, x):
        return self.net(x).flatten()


def samples(generator, n, seed):
    """`n` generated digits in [0, 1] as a NumPy array (n, 8, 8), from noise fixed by `seed`,
    with the generator in eval mode (BatchNorm's running statistics)."""
    generator.eval()
    px.manual_seed(seed)
    with px.no_grad():
        images = (generator(px.randn(n, generator.latent)) + 1) / 2
    generator.train()
    return images.numpy()[:, 0]


def main(argv=None):
    p = parser(__doc__.split("\n")[0], checkpoint="dcgan_digits.ckpt")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image", default="dcgan_digits.png", help="the PNG written at the end")
    args = p.parse_args(argv)
    run = Run(args)

    train_set, _ = load_digits(transform=lambda image: image * 2 - 1)
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    classifier = None
    if run.rank == 0:  # the judge of samples: only rank 0 reports
        real_images = np.stack([(train_set[i][0].numpy()[0] + 1) / 2
                                for i in range(len(train_set))])
        classifier = digit_classifier(real_images, np.array(train_set.targets.tolist()))

    px.manual_seed(args.seed)
    generator = dist.DistributedDataParallel(
        dist.SyncBatchNorm.convert_sync_batchnorm(Generator()))
    discriminator = dist.DistributedDataParallel(Discriminator())
    opt_g = px.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = px.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    start = 0
    state = run.load()
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = state["epoch"]
    run.print(f"digits: {len(train_set)} training images; generator "
              f"{sum(p.numel() for p in generator.parameters())} parameters, discriminator "
              f"{sum(p.numel() for p in discriminator.parameters())}")

    for epoch in range(start, args.epochs):
        run.seed_epoch(epoch)
        sampler.set_epoch(epoch)
        d_total = g_total = 0.0
        for real, _ in run.progress(loader, f"epoch {epoch + 1}/{args.epochs}"):
            n = len(real)
            # discriminator: real images are 1, generated ones 0 (the generator runs without
            # a graph here, so only the discriminator's DDP expects this backward)
            with px.no_grad():
                fake = generator(px.randn(n, generator.module.latent))
            logits = discriminator(px.cat([real, fake]))
            targets = px.cat([px.ones(n), px.zeros(n)])
            d_loss = F.binary_cross_entropy_with_logits(logits, targets)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            # generator: make the discriminator say 1 (its gradients, averaged too, are
            # discarded by the zero_grad of the next discriminator step)
            fake = generator(px.randn(n, generator.module.latent))
            g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), px.ones(n))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_total, g_total = d_total + d_loss.item(), g_total + g_loss.item()
        if run.rank == 0:
            confidence, classes, score = digit_score(
                classifier, samples(generator.module, 500, seed=args.seed))
            run.log(epoch + 1, discriminator_loss=d_total / len(loader),
                    generator_loss=g_total / len(loader), sample_score=score)
            run.print(f"epoch {epoch + 1}: discriminator loss {d_total / len(loader):.3f}, "
                      f"generator loss {g_total / len(loader):.3f}; samples: confidence "
                      f"{confidence:.0%}, {classes} classes, score {score:.2f} "
                      f"({run.elapsed():.1f} s)")
        if run.save({"generator": generator.state_dict(),
                     "discriminator": discriminator.state_dict(), "opt_g": opt_g.state_dict(),
                     "opt_d": opt_d.state_dict(), "epoch": epoch + 1}):
            break
    run.check_replicas(generator, discriminator)
    score = None
    if run.rank == 0:
        images = samples(generator.module, 500, seed=args.seed)
        confidence, classes, score = digit_score(classifier, images)
        run.print(f"final sample score: {score:.2f} (confidence {confidence:.0%}, {classes} "
                  f"classes) in {run.elapsed():.1f} s")
        save_grid(args.image, images[:100], columns=10)
        run.print(f"wrote {args.image}")
    run.finish()
    return score


if __name__ == "__main__":
    main()
