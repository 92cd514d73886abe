"""FSDP1 on a CNN classifier (in the style of PyTorch's "Getting Started with Fully Sharded
Data Parallel" tutorial, FSDP_mnist.py, on CPU): mp.spawn starts one process per rank in a
"gloo" group; each wraps the model in FullyShardedDataParallel with a size-based
auto_wrap_policy, trains on its DistributedSampler shard of scikit-learn's 8x8 digits with
Adadelta and StepLR, and evaluates. Then, as the tutorial saves its model, every rank calls
`model.state_dict()` after a barrier (whole tensors, FSDP1's default FULL_STATE_DICT) and
rank 0 saves it; a plain model loads the file and is evaluated again."""
import argparse
import functools
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def setup(rank, world_size, port):
    os.environ['MASTER_ADDR'] = 'localhost'
    os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def cleanup():
    dist.destroy_process_group()


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def datasets():
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    images = (images - 0.3) / 0.4
    labels = torch.tensor(digits.target, dtype=torch.long)
    return TensorDataset(images[:1500], labels[:1500]), TensorDataset(images[1500:],
                                                                      labels[1500:])


def train(args, model, rank, world_size, train_loader, optimizer, epoch, sampler):
    model.train()
    ddp_loss = torch.zeros(2)
    if sampler:
        sampler.set_epoch(epoch)
    for step, (data, target) in enumerate(train_loader):
        if step >= args.steps:
            break
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target, reduction='sum')
        loss.backward()
        optimizer.step()
        ddp_loss[0] += loss.item()
        ddp_loss[1] += len(data)
        step_loss = torch.tensor([loss.item() / len(data)])
        dist.all_reduce(step_loss, op=dist.ReduceOp.SUM)
        if rank == 0:
            print('loss {:.6f}'.format(step_loss.item() / world_size), flush=True)
    dist.all_reduce(ddp_loss, op=dist.ReduceOp.SUM)
    if rank == 0:
        print('Train Epoch: {} \tLoss: {:.6f}'.format(epoch, ddp_loss[0] / ddp_loss[1]))


def test(model, rank, test_loader, reduce=True):
    model.eval()
    ddp_loss = torch.zeros(3)
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            ddp_loss[0] += F.nll_loss(output, target, reduction='sum').item()
            pred = output.argmax(dim=1, keepdim=True)
            ddp_loss[1] += pred.eq(target.view_as(pred)).sum().item()
            ddp_loss[2] += len(data)
    if reduce:
        dist.all_reduce(ddp_loss, op=dist.ReduceOp.SUM)
    if rank == 0:
        print('Test set: Average loss: {:.4f}, Accuracy: {}/{} ({:.2f}%)'.format(
            ddp_loss[0] / ddp_loss[2], int(ddp_loss[1]), int(ddp_loss[2]),
            100. * ddp_loss[1] / ddp_loss[2]), flush=True)
    return ddp_loss[1] / ddp_loss[2]


def fsdp_main(rank, world_size, args):
    setup(rank, world_size, args.port)
    torch.manual_seed(args.seed)
    train_set, test_set = datasets()
    sampler1 = DistributedSampler(train_set, rank=rank, num_replicas=world_size, shuffle=True)
    sampler2 = DistributedSampler(test_set, rank=rank, num_replicas=world_size)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler1)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size, sampler=sampler2)
    my_auto_wrap_policy = functools.partial(size_based_auto_wrap_policy, min_num_params=1000)

    model = Net()
    model = FSDP(model, auto_wrap_policy=my_auto_wrap_policy, device_id=torch.device("cpu"))
    if rank == 0:
        print(model)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        train(args, model, rank, world_size, train_loader, optimizer, epoch, sampler=sampler1)
        accuracy = test(model, rank, test_loader)
        scheduler.step()

    if args.save_model:
        # use a barrier to make sure training is done on all ranks
        dist.barrier()
        states = model.state_dict()
        if rank == 0:
            torch.save(states, os.path.join(args.folder, "mnist_cnn.pt"))
    dist.barrier()
    if rank == 0 and args.save_model:
        plain = Net()
        plain.load_state_dict(torch.load(os.path.join(args.folder, "mnist_cnn.pt")))
        reloaded = test(plain, rank, DataLoader(test_set, batch_size=args.test_batch_size),
                        reduce=False)
        print('Reloaded accuracy matches: {}'.format(
            abs(float(reloaded) - float(accuracy)) < 0.05), flush=True)
    cleanup()
    print(f"Finished running FSDP1 example on rank {rank}.", flush=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='PyTorch FSDP1 digits example')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--test-batch-size', type=int, default=200)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--steps', type=int, default=20, help='batches per epoch at most')
    parser.add_argument('--lr', type=float, default=1.0)
    parser.add_argument('--gamma', type=float, default=0.7)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--port', type=int, default=29513)
    parser.add_argument('--world-size', type=int, default=2)
    parser.add_argument('--folder', default='.')
    parser.add_argument('--save-model', action='store_true', default=True)
    args = parser.parse_args()
    mp.spawn(fsdp_main, args=(args.world_size, args), nprocs=args.world_size, join=True)
