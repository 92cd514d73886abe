"""Per-step time of the example-script models (tests/compat/originals): Phalanx vs PyTorch CPU.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        python benchmarks/script_steps.py [--cases mnist_rnn dcgan] [--repeats 30]

Each model is the one its script builds, at the script's default sizes (the language models
with a 1000-word vocabulary, the transformer without positional encoding); it is built in PyTorch
and copied weight for weight into the same Phalanx model (the eval-mode outputs must agree,
printed as a sanity check). One step is what the script's training loop does per batch:
zero_grad, forward, loss, backward, optimizer step (for time_sequence, one L-BFGS step with
one closure evaluation, max_iter=1; for dcgan, the discriminator on real and fake images and
the generator, with both Adam steps; for reinforce and actor_critic, one CartPole episode of
50 actions, each a policy forward, a Categorical draw and its log_prob, then the script's
finish_episode update; for gcn and gat, the scripts' training step on the whole graph).
The frameworks alternate step by step in one process, and the table shows the median step
time of each and the ratio Phalanx/PyTorch (1.0 = as fast; the goal is <= 1.2 on every row).

Both run single-threaded: torch.set_num_threads(1) and NumPy's BLAS limited to one thread.
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set, make NumPy's OpenBLAS pick slower kernels;
unset them as above to compare like with like (the script warns when they are set).
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import argparse  # noqa: E402
import warnings
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import phalanx as px


# ---- the models, written once against either framework's namespace ------------------------
def mnist_rnn(lib):
    nn, F = lib.nn, lib.nn.functional

    class Net(nn.Module):          # mnist_rnn.py: row-by-row LSTM on 8x8 digits
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(input_size=8, hidden_size=32, batch_first=True)
            self.batchnorm = nn.BatchNorm1d(32)
            self.dropout1 = nn.Dropout2d(0.25)
            self.dropout2 = nn.Dropout2d(0.5)
            self.fc1 = nn.Linear(32, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            out, _ = self.rnn(x.reshape(-1, 8, 8))
            out = self.dropout1(self.batchnorm(out[:, -1, :]))
            out = self.dropout2(F.relu(self.fc1(out)))
            return F.log_softmax(self.fc2(out), dim=1)

    return Net()


def time_sequence(lib):
    nn = lib.nn

    class Sequence(nn.Module):     # time_sequence.py: two LSTMCells unrolled by hand, float64
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTMCell(1, 24)
            self.lstm2 = nn.LSTMCell(24, 24)
            self.linear = nn.Linear(24, 1)

        def forward(self, x):
            outputs = []
            zeros = lambda: lib.zeros(x.size(0), 24, dtype=lib.double)  # noqa: E731
            h_t, c_t, h_t2, c_t2 = zeros(), zeros(), zeros(), zeros()
            for input_t in x.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                outputs.append(self.linear(h_t2))
            return lib.cat(outputs, dim=1)

    return Sequence().double()


def dcgan(lib):
    nn = lib.nn
    nz, ngf, ndf = 16, 16, 16
    gen = nn.Sequential(nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
                        nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                        nn.ConvTranspose2d(ngf * 2, 1, 4, 2, 1, bias=False), nn.Tanh())
    disc = nn.Sequential(nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(ndf, ndf * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(ndf * 2),
                         nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    return nn.ModuleDict({"G": gen, "D": disc})


def mnist_cnn(lib):
    nn, F = lib.nn, lib.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, 1)
            self.conv2 = nn.Conv2d(16, 32, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(32 * 2 * 2, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
            x = self.dropout1(x).flatten(1)
            x = self.dropout2(F.relu(self.fc1(x)))
            return F.log_softmax(self.fc2(x), dim=1)

    return Net()


def vae(lib):
    nn, F = lib.nn, lib.nn.functional

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(64, 48), nn.Linear(48, 8), nn.Linear(48, 8)
            self.fc3, self.fc4 = nn.Linear(8, 48), nn.Linear(48, 64)

        def forward(self, x):
            h1 = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h1), self.fc22(h1)
            z = mu + lib.randn_like(mu) * lib.exp(0.5 * logvar) if self.training else mu
            return lib.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    return VAE()


def word_lm(kind):
    def build(lib):
        nn, F = lib.nn, lib.nn.functional

        class RNNModel(nn.Module):  # word_lm.py: embedding, 2-layer LSTM/GRU, decoder
            def __init__(self, ntoken=1000, ninp=32, nhid=32, nlayers=2):
                super().__init__()
                self.ntoken = ntoken
                self.drop = nn.Dropout(0.2)
                self.encoder = nn.Embedding(ntoken, ninp)
                self.rnn = getattr(nn, kind)(ninp, nhid, nlayers, dropout=0.2)
                self.decoder = nn.Linear(nhid, ntoken)

            def forward(self, x):
                out, _ = self.rnn(self.drop(self.encoder(x)))
                out = self.decoder(self.drop(out)).view(-1, self.ntoken)
                return F.log_softmax(out, dim=1)

        return RNNModel()
    return build


def transformer_lm(lib):
    nn, F = lib.nn, lib.nn.functional

    class Model(nn.Module):        # word_lm.py --model Transformer, without the positions
        def __init__(self, ntoken=1000, d=32):
            super().__init__()
            self.ntoken = ntoken
            self.emb = nn.Embedding(ntoken, d)
            layer = nn.TransformerEncoderLayer(d, 2, 32, 0.2)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.decoder = nn.Linear(d, ntoken)

        def forward(self, x):
            out = self.decoder(self.encoder(self.emb(x)))
            return F.log_softmax(out.view(-1, self.ntoken), dim=1)

    return Model()


# ---- the inputs, losses and optimizers of each script --------------------------------------
def _script(name, lib):
    """The definitions of tests/compat/originals/<name>.py (for Phalanx, ported by the compat
    tests' import rewrite), without running its main block."""
    import importlib.util
    compat = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "compat")
    spec = importlib.util.spec_from_file_location("port", os.path.join(compat, "port.py"))
    port = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(port)
    with open(os.path.join(compat, "originals", f"{name}.py")) as f:
        source = f.read()
    script = {"__name__": f"{name}_{lib.__name__}"}
    exec(compile(port.port(source) if lib is px else source, f"{name}.py", "exec"), script)
    return script


def siamese(lib):
    """siamese.py's own SiameseNetwork, given both images of each pair stacked in one input."""
    script = _script("siamese", lib)

    class Pairs(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = script["SiameseNetwork"]()

        def forward(self, x):
            return self.net(x[:, 0], x[:, 1])

    return Pairs()


def graph_network(name):
    """gcn.py's or gat.py's network at the script's default sizes, on the digits citation
    graph the script writes and its own load_cora reads (a sparse adjacency for gcn, a dense
    mask for gat); the graph and the labels ride along with the model."""
    def build(lib):
        import tempfile
        script = _script(name, lib)
        path = os.path.join(tempfile.gettempdir(), f"phalanx_script_steps_{name}")
        script["write_graph"](path, 42)
        features, labels, adj = script["load_cora"](path)
        net = script["GCN"](features.shape[1], 16, 10, False, 0.5) if name == "gcn" else \
            script["GAT"](features.shape[1], 64, 8, 10, False, 0.6, 0.2)

        class Graph(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.net, self.labels = net, labels

            def forward(self, _):
                return self.net(features, adj)
        return Graph()
    return build


def reinforce(lib):
    nn, F = lib.nn, lib.nn.functional

    class Policy(nn.Module):       # reinforce.py: a softmax policy for CartPole
        def __init__(self):
            super().__init__()
            self.affine1 = nn.Linear(4, 128)
            self.dropout = nn.Dropout(p=0.6)
            self.affine2 = nn.Linear(128, 2)

        def forward(self, x):
            return F.softmax(self.affine2(F.relu(self.dropout(self.affine1(x)))), dim=1)

    return Policy()


def actor_critic(lib):
    nn, F = lib.nn, lib.nn.functional

    class Policy(nn.Module):       # actor_critic.py: shared layer, action and value heads
        def __init__(self):
            super().__init__()
            self.affine1 = nn.Linear(4, 128)
            self.action_head = nn.Linear(128, 2)
            self.value_head = nn.Linear(128, 1)

        def forward(self, x):
            x = F.relu(self.affine1(x))
            return F.softmax(self.action_head(x), dim=-1), self.value_head(x)

    return Policy()


def _data(name, rng):
    if name in ("reinforce", "actor_critic"):     # CartPole states, for the sanity check
        return rng.standard_normal((8, 4)).astype(np.float32), None
    if name in ("gcn", "gat"):                    # the graph travels with the model
        return np.zeros(1, np.float32), None
    if name in ("mnist_rnn", "mnist_cnn"):
        return rng.random((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 64)
    if name == "time_sequence":
        x = np.sin((np.arange(60) + rng.integers(-80, 80, (9, 1))) / 20.0)
        return x[:, :-1].copy(), x[:, 1:].copy()
    if name == "dcgan":
        return rng.random((64, 1, 8, 8)).astype(np.float32) * 2 - 1, \
            rng.standard_normal((64, 16, 1, 1)).astype(np.float32)
    if name == "vae":
        return rng.random((128, 64)).astype(np.float32), None
    if name == "siamese":                         # 64 pairs of 8x8 digits, same or not
        return rng.random((64, 2, 1, 8, 8)).astype(np.float32), \
            rng.integers(0, 2, 64).astype(np.float32)
    tokens = rng.integers(0, 1000, (12, 8))       # word_lm: bptt 12, batch 8
    return tokens, rng.integers(0, 1000, 96)


def make_step(name, lib, model, x, y):
    """The script's per-batch step, as a function of no arguments."""
    F, optim = lib.nn.functional, lib.optim
    params = list(model.parameters())
    if name == "mnist_rnn":
        opt = optim.Adadelta(params, lr=0.5)
        loss_fn = lambda: F.nll_loss(model(x), y)  # noqa: E731
    elif name == "mnist_cnn":
        opt = optim.Adadelta(params, lr=1.0)
        loss_fn = lambda: F.nll_loss(model(x), y)  # noqa: E731
    elif name == "time_sequence":   # L-BFGS with one closure evaluation per step
        opt = optim.LBFGS(params, lr=0.8, max_iter=1)
        mse = lib.nn.MSELoss()

        def closure():
            opt.zero_grad()
            loss = mse(model(x), y)
            loss.backward()
            return loss
        return lambda: opt.step(closure)
    elif name == "siamese":
        opt = optim.Adadelta(params, lr=1.0)
        bce = lib.nn.BCELoss()
        loss_fn = lambda: bce(model(x).squeeze(), y)  # noqa: E731
    elif name in ("gcn", "gat"):    # the scripts' train_iter on the training nodes
        opt = optim.Adam(params, lr=0.01 if name == "gcn" else 0.005, weight_decay=5e-4)
        train = lib.arange(900, len(model.labels))
        loss_fn = lambda: F.nll_loss(model(x)[train], model.labels[train])  # noqa: E731
    elif name == "vae":
        opt = optim.Adam(params, lr=1e-2)

        def loss_fn():
            recon, mu, logvar = model(x)
            bce = F.binary_cross_entropy(recon, x, reduction="sum")
            return bce - 0.5 * lib.sum(1 + logvar - mu.pow(2) - logvar.exp())
    elif name == "dcgan":
        return _dcgan_step(lib, model, x, y)
    elif name in ("reinforce", "actor_critic"):
        return _episode_step(name, lib, model)
    else:                            # the language models: SGD with clipping, as word_lm.py
        opt = optim.SGD(params, lr=5)

        def step():
            model.zero_grad()
            F.nll_loss(model(x), y).backward()
            lib.nn.utils.clip_grad_norm_(params, 0.25)
            opt.step()
        return step

    def step():
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return step


def _episode_step(name, lib, model, decisions=50, gamma=0.99):
    """One episode of CartPole as the script plays it, cut at `decisions` actions (a new
    episode starts whenever the pole falls), then the script's finish_episode update."""
    import gymnasium as gym
    F = lib.nn.functional
    env = gym.make("CartPole-v1")
    state, _ = env.reset(seed=543)
    opt = lib.optim.Adam(model.parameters(), lr=1e-2 if name == "reinforce" else 3e-2)
    eps = np.finfo(np.float32).eps.item()

    def step():
        nonlocal state
        saved, rewards = [], []
        for _ in range(decisions):                       # select_action
            x = lib.from_numpy(state).float()
            if name == "reinforce":
                probs, value = model(x.unsqueeze(0)), None
            else:
                probs, value = model(x)
            m = lib.distributions.Categorical(probs)
            action = m.sample()
            saved.append((m.log_prob(action), value))
            state, reward, done, _, _ = env.step(action.item())
            rewards.append(reward)
            if done:
                state, _ = env.reset()
        R, returns = 0, []                               # finish_episode
        for r in rewards[::-1]:
            R = r + gamma * R
            returns.insert(0, R)
        returns = lib.tensor(returns)
        returns = (returns - returns.mean()) / (returns.std() + eps)
        opt.zero_grad()
        if name == "reinforce":
            loss = lib.cat([-log_prob * R for (log_prob, _), R in zip(saved, returns)]).sum()
        else:
            policy_losses, value_losses = [], []
            for (log_prob, value), R in zip(saved, returns):
                advantage = R - value.item()
                policy_losses.append(-log_prob * advantage)
                value_losses.append(F.smooth_l1_loss(value, lib.tensor([R])))
            loss = lib.stack(policy_losses).sum() + lib.stack(value_losses).sum()
        loss.backward()
        opt.step()
    return step


def _dcgan_step(lib, model, real, noise):
    gen, disc = model["G"], model["D"]
    opt_d = lib.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = lib.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = lib.nn.BCELoss()
    ones, zeros = lib.ones(real.shape[0]), lib.zeros(real.shape[0])

    def step():
        disc.zero_grad()
        bce(disc(real).view(-1), ones).backward()
        fake = gen(noise)
        bce(disc(fake.detach()).view(-1), zeros).backward()
        opt_d.step()
        gen.zero_grad()
        bce(disc(fake).view(-1), ones).backward()
        opt_g.step()
    return step


CASES = {  # name: (builder, kind of script)
    "mnist_rnn": (mnist_rnn, "goal"),
    "time_sequence": (time_sequence, "goal"),
    "dcgan": (dcgan, "goal"),
    "mnist_cnn": (mnist_cnn, "control"),
    "vae": (vae, "control"),
    "siamese": (siamese, "control"),
    "lstm_lm": (word_lm("LSTM"), "control"),
    "gru_lm": (word_lm("GRU"), "control"),
    "transformer_lm": (transformer_lm, "control"),
    "reinforce": (reinforce, "control"),
    "actor_critic": (actor_critic, "control"),
    "gcn": (graph_network("gcn"), "control"),
    "gat": (graph_network("gat"), "control"),
}


def _sanity(name, tmodel, pmodel, tx, px_x):
    """Largest difference of the eval-mode outputs (the weights must have been copied)."""
    if name == "dcgan":
        tmodel, pmodel = tmodel["D"], pmodel["D"]
    tmodel.eval(), pmodel.eval()
    with torch.no_grad(), px.no_grad():
        a, b = tmodel(tx), pmodel(px_x)
    tmodel.train(), pmodel.train()
    a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    return float(np.abs(a.numpy() - b.numpy()).max())


def time_steps(steps, repeats, warmup=3):
    """Median wall time of each step function; they alternate, so a busy machine slows all
    of them alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, ts in zip(steps, times):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def run_case(name, repeats):
    build = CASES[name][0]
    torch.manual_seed(0)
    px.manual_seed(0)
    tmodel, pmodel = build(torch), build(px)
    pmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in
                            tmodel.state_dict().items()})
    x, y = _data(name, np.random.default_rng(0))
    tx, px_x = torch.from_numpy(x), px.tensor(x)
    ty = torch.from_numpy(y) if y is not None else None
    py = px.tensor(y) if y is not None else None
    diff = _sanity(name, tmodel, pmodel, tx, px_x)
    steps = [make_step(name, px, pmodel, px_x, py), make_step(name, torch, tmodel, tx, ty)]
    with threadpool_limits(limits=1):
        t_px, t_torch = time_steps(steps, repeats)
    return t_px, t_torch, diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    # mnist_rnn.py applies Dropout2d to 2-D activations; both frameworks warn every step
    warnings.filterwarnings("ignore", message="dropout2d: Received a 2-D input")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")   # PyTorch's, gcn.py
    slow_blas = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    print(f"1 thread  numpy {np.__version__}  torch {torch.__version__}  repeats "
          f"{args.repeats}" + (f"  (warning: {', '.join(slow_blas)} set: NumPy's BLAS runs "
                               f"slow; unset them)" if slow_blas else ""))
    print(f"{'case':<16}{'kind':<9}{'phalanx ms':>11}{'torch ms':>10}{'ratio':>7}"
          f"{'out diff':>10}")
    for name in args.cases:
        t_px, t_torch, diff = run_case(name, args.repeats)
        print(f"{name:<16}{CASES[name][1]:<9}{t_px * 1e3:>11.2f}{t_torch * 1e3:>10.2f}"
              f"{t_px / t_torch:>7.2f}{diff:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
