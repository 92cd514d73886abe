"""Hogwild training (in the style of pytorch/examples mnist_hogwild): several processes train one
model whose parameters live in shared memory, each with its own optimizer and data order, on
scikit-learn's 8x8 digits; the main process tests the shared model before and after."""
import argparse

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=3)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=3)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(20 * 2 * 2, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 80)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def digits():
    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(data.target, dtype=torch.long)
    return (TensorDataset((images[:1200] - 0.5) / 0.5, labels[:1200]),
            TensorDataset((images[1200:] - 0.5) / 0.5, labels[1200:]))


def train(rank, args, model, device, dataset, dataloader_kwargs):
    torch.manual_seed(args.seed + rank)
    train_loader = DataLoader(dataset, **dataloader_kwargs)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch_idx, (data, target) in enumerate(train_loader):
            optimizer.zero_grad()
            output = model(data.to(device))
            loss = F.nll_loss(output, target.to(device))
            loss.backward()
            optimizer.step()
            if batch_idx % args.log_interval == 0:
                print('{}\tTrain Epoch: {} [{}/{}]\tLoss: {:.6f}'.format(
                    rank, epoch, batch_idx * len(data), len(train_loader.dataset),
                    loss.item()))


def test(model, device, dataset):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in DataLoader(dataset, batch_size=1000):
            output = model(data.to(device))
            test_loss += F.nll_loss(output, target.to(device), reduction='sum').item()
            pred = output.max(1)[1]
            correct += pred.eq(target.to(device)).sum().item()
    test_loss /= len(dataset)
    print('Test set: Average loss: {:.4f}, Accuracy: {}/{}'.format(
        test_loss, correct, len(dataset)))
    print('loss {}'.format(test_loss))


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='Digits Hogwild Example')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--lr', type=float, default=0.05)
    parser.add_argument('--momentum', type=float, default=0.5)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--log-interval', type=int, default=10)
    parser.add_argument('--num-processes', type=int, default=2)
    args = parser.parse_args()

    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    mp.set_start_method('spawn', force=True)
    train_set, test_set = digits()
    model = Net().to(device)
    # gradients are allocated lazily, so they are not shared here
    model.share_memory()
    test(model, device, test_set)

    processes = []
    kwargs = {'batch_size': args.batch_size, 'shuffle': True}
    for rank in range(args.num_processes):
        p = mp.Process(target=train, args=(rank, args, model, device, train_set, kwargs))
        # We first train the model across `num_processes` processes
        p.start()
        processes.append(p)
    for p in processes:
        p.join()
        assert p.exitcode == 0, p.exitcode

    # Once training is complete, we can test the model
    test(model, device, test_set)
