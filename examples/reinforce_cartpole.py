"""Reinforcement learning: REINFORCE with a learned baseline on gymnasium's CartPole, the ranks
collecting episodes in parallel and averaging their gradients.

    python examples/reinforce_cartpole.py                             # one process
    mpirun -n 2 python examples/reinforce_cartpole.py                 # MPI
    phalanx run --standalone --nproc-per-node 2 examples/reinforce_cartpole.py
    ... --resume                                    # continue from the last checkpoint
    ... --epochs 60                                 # the test's settings

Environment: `CartPole-v1` from gymnasium (MIT; pip install 'phalanx[examples]'): keep a pole
upright on a cart by pushing it left or right; +1 per step, at most 500 steps. It counts as
solved when the average return over 100 episodes is at least 475.

Method (Williams, 1992; Sutton & Barto ch. 13.4): a policy network (4 -> 64 -> 64 -> 2 logits,
tanh) and a value network of the same shape, one module. An epoch is one policy-gradient step:
every rank plays `--episodes` episodes at once (its own environment seeds; actions sampled from
the policy), computes each step's discounted return-to-go G, and its loss
-log pi(a|s) * (G - V(s)) (the advantage normalised over the rank's batch, V detached) plus
0.5 (V(s) - G)^2 on returns scaled by 1/100 and minus 0.01 times the policy's entropy.
`DistributedDataParallel` averages the gradients over ranks, so N ranks learn from N times the
episodes per step. Adam. (No `DistributedSampler` here: a rank's data are the episodes it
plays, and its seeds are its shard.)

Rank 0 prints, every 5 epochs, the mean return of the episodes just played (over all ranks) and
saves a checkpoint with `px.save` then (`--resume` continues from it exactly: the episodes of
an epoch depend only on the seed, the rank and the epoch). At the end the greedy policy (the
likelier action) plays 100 evaluation episodes, shared among the ranks, and rank 0 reports
their average return.

Quality (measured on 2 CPU cores, one process): it is solved -- the 100 greedy evaluation
episodes average 500, the maximum -- within the test's settings (60 epochs, 480 episodes; seeds
0-3) in 6-27 s; the defaults (100 epochs) score 500 in about 16 s, and with 2 ranks (16
episodes per step) 485 in about 20 s.
"""
import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.nn import functional as F

from ddp_common import Run, parser


def make_envs(count):
    try:
        import gymnasium as gym
    except ImportError as e:
        raise ImportError("CartPole comes with gymnasium: pip install 'phalanx[examples]' "
                          "(or pip install gymnasium)") from e
    return [gym.make("CartPole-v1") for _ in range(count)]


def sample(probs):
    """One index per row of `probs` (N, K), drawn from that row's categorical distribution:
    the first index whose cumulative probability exceeds a uniform number."""
    u = px.rand(probs.shape[0], 1)
    return (probs.cumsum(1) < u).sum(1).clamp(max=probs.shape[1] - 1)


class ActorCritic(nn.Module):
    def __init__(self, observations=4, actions=2, hidden=64):
        super().__init__()
        self.policy = nn.Sequential(nn.Linear(observations, hidden), nn.Tanh(),
                                    nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, actions))
        self.value = nn.Sequential(nn.Linear(observations, hidden), nn.Tanh(),
                                   nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, states):
        """(action logits (N, actions), state values (N,))."""
        return self.policy(states), self.value(states).flatten()


def play(policy, envs, seeds, greedy=False):
    """Play one episode in each of `envs` (reset with `seeds`), all at once, choosing actions
    with `policy` (a module giving logits); returns per episode (states (T, 4) float32,
    actions (T,) int64, rewards (T,) float32)."""
    states = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    history = [([], [], []) for _ in envs]
    active = list(range(len(envs)))
    while active:
        batch = px.tensor(np.stack([states[i] for i in active]), dtype=px.float32)
        with px.no_grad():
            logits = policy(batch)
            if greedy:
                chosen = logits.argmax(1)
            else:
                chosen = sample(F.softmax(logits, dim=1))
        still = []
        for i, action in zip(active, chosen.tolist()):
            states_i, actions_i, rewards_i = history[i]
            states_i.append(states[i])
            actions_i.append(action)
            states[i], reward, terminated, truncated, _ = envs[i].step(action)
            rewards_i.append(reward)
            if not (terminated or truncated):
                still.append(i)
        active = still
    return [(np.array(s, np.float32), np.array(a, np.int64), np.array(r, np.float32))
            for s, a, r in history]


def returns_to_go(rewards, gamma):
    out = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def evaluate(run, model, envs, episodes, seed):
    """Average return of the greedy policy over `episodes` episodes shared among the ranks."""
    mine = list(range(run.rank, episodes, run.world))
    total = 0.0
    for first in range(0, len(mine), len(envs)):
        chunk = mine[first:first + len(envs)]
        played = play(model.policy, envs[:len(chunk)], [10**9 + seed * 1000 + i for i in chunk],
                      greedy=True)
        total += sum(float(r.sum()) for _, _, r in played)
    total, count = run.sum(total, len(mine))
    return total / count


def main(argv=None):
    p = parser(__doc__.split("\n")[0], checkpoint="reinforce_cartpole.ckpt")
    p.add_argument("--epochs", type=int, default=100, help="policy-gradient steps")
    p.add_argument("--episodes", type=int, default=8, help="per rank and step")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--report-every", type=int, default=5, help="epochs between reports and "
                   "checkpoints")
    args = p.parse_args(argv)
    run = Run(args)

    envs = make_envs(args.episodes)
    px.manual_seed(args.seed)
    model = dist.DistributedDataParallel(ActorCritic())
    optimizer = px.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    run.print(f"CartPole-v1: {args.episodes} episodes per rank and step, "
              f"{args.episodes * run.world} per step in all; "
              f"{sum(p.numel() for p in model.parameters())} parameters")

    recent = []
    for epoch in run.progress(range(start, args.epochs), "training"):
        run.seed_epoch(epoch)
        first_seed = (args.seed * 100_000 + epoch * run.world + run.rank) * args.episodes
        played = play(model.module.policy, envs, range(first_seed, first_seed + args.episodes))
        states = px.tensor(np.concatenate([s for s, _, _ in played]))
        actions = px.tensor(np.concatenate([a for _, a, _ in played]))
        returns = px.tensor(np.concatenate([returns_to_go(r, args.gamma)
                                            for _, _, r in played]))

        logits, values = model(states)
        log_probs = F.log_softmax(logits, dim=1)
        advantage = returns - values.detach() * 100
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        chosen = log_probs.gather(1, actions[:, None]).flatten()
        entropy = -(log_probs.exp() * log_probs).sum(1).mean()
        loss = (-(chosen * advantage).mean() + 0.5 * F.mse_loss(values, returns / 100)
                - 0.01 * entropy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        total, count = run.sum(sum(float(r.sum()) for _, _, r in played), len(played))
        recent.append(total / count)
        if (epoch + 1) % args.report_every == 0 or epoch + 1 == args.epochs:
            run.log(epoch + 1, mean_return=np.mean(recent))
            run.print(f"epoch {epoch + 1}: mean return {np.mean(recent):.1f} over the last "
                      f"{len(recent) * count:.0f} episodes ({run.elapsed():.1f} s)")
            recent = []
            if run.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "epoch": epoch + 1}):
                break
    run.check_replicas(model)
    score = evaluate(run, model.module, envs, args.eval_episodes, args.seed)
    verdict = "solved" if score >= 475 else "not solved yet (475 needed)"
    run.print(f"evaluation: average return {score:.1f} over {args.eval_episodes} episodes of "
              f"the greedy policy, {verdict}, in {run.elapsed():.1f} s")
    run.finish()
    return score


if __name__ == "__main__":
    main()
