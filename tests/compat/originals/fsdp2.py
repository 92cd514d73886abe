"""Fully sharded data parallel training (in the style of the PyTorch FSDP2 example,
pytorch/examples distributed/FSDP2, on CPU): mp.spawn starts one process per rank in a "gloo"
group; a small transformer is built on the meta device, each block and then the root is
fully_shard-ed, the sharded parameters are materialised with to_empty and reset_parameters,
and Adam trains it with gradient clipping. Halfway through, the model's and optimizer's full
state dicts are gathered to rank 0 and saved (torch.distributed.checkpoint.state_dict); a
freshly built sharded model loads them (broadcast from rank 0) and training goes on. With
--dcp the checkpoint is a sharded one instead (torch.distributed.checkpoint, as in the DCP
tutorial): every rank saves its own chunks through a Stateful AppState and loads them back."""
import argparse
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, Shard


@dataclass
class ModelArgs:
    n_layers: int = 2
    vocab_size: int = 32
    max_seq_len: int = 16
    dim: int = 32
    n_heads: int = 4


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.head_dim = args.dim // args.n_heads
        self.wq = nn.Linear(args.dim, args.dim, bias=False)
        self.wk = nn.Linear(args.dim, args.dim, bias=False)
        self.wv = nn.Linear(args.dim, args.dim, bias=False)
        self.wo = nn.Linear(args.dim, args.dim, bias=False)

    def forward(self, x):
        bsz, seq_len, _ = x.size()
        q, k, v = (w(x).view(bsz, seq_len, self.n_heads, self.head_dim).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).contiguous().view(bsz, seq_len, -1))

    def reset_parameters(self):
        for w in (self.wq, self.wk, self.wv, self.wo):
            w.reset_parameters()


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = nn.LayerNorm(args.dim)
        self.attention = Attention(args)
        self.ffn_norm = nn.LayerNorm(args.dim)
        self.w1 = nn.Linear(args.dim, 4 * args.dim)
        self.w2 = nn.Linear(4 * args.dim, args.dim)

    def forward(self, x):
        h = x + self.attention(self.attention_norm(x))
        return h + self.w2(F.gelu(self.w1(self.ffn_norm(h))))

    def reset_parameters(self):
        for m in (self.attention_norm, self.attention, self.ffn_norm, self.w1, self.w2):
            m.reset_parameters()


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.pos_embeddings = nn.Embedding(args.max_seq_len, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = nn.LayerNorm(args.dim)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)

    def forward(self, tokens):
        _bsz, seq_len = tokens.size()
        pos = torch.arange(0, seq_len, device=tokens.device)
        h = self.tok_embeddings(tokens) + self.pos_embeddings(pos)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h)).float()

    def reset_parameters(self):
        for m in (self.tok_embeddings, self.pos_embeddings, self.norm, self.output,
                  *self.layers):
            m.reset_parameters()


class AppState(Stateful):
    """The DCP tutorial's wrapper: model and optimizer state in one Stateful object."""

    def __init__(self, model, optimizer=None):
        self.model = model
        self.optimizer = optimizer

    def state_dict(self):
        model_state_dict, optimizer_state_dict = get_state_dict(self.model, self.optimizer)
        return {"model": model_state_dict, "optim": optimizer_state_dict}

    def load_state_dict(self, state_dict):
        set_state_dict(self.model, self.optimizer, model_state_dict=state_dict["model"],
                       optim_state_dict=state_dict["optim"])


def build(args):
    with torch.device("meta"):
        model = Transformer(args)
    for layer in model.layers:
        fully_shard(layer)
    fully_shard(model)
    assert isinstance(model, Transformer) and isinstance(model, FSDPModule)
    for param in model.parameters():
        assert isinstance(param, DTensor) and param.placements == (Shard(0),)
    model.to_empty(device="cpu")
    return model


def batch(step, rank, args, size=8):
    # each row counts up from a random start: the next token is predictable
    g = torch.Generator().manual_seed(1000 * step + rank)
    start = torch.randint(0, args.vocab_size, (size, 1), generator=g)
    return (start + torch.arange(args.max_seq_len + 1)) % args.vocab_size


def train(model, optimizer, steps, first, rank, args):
    for step in range(first, first + steps):
        tokens = batch(step, rank, args)
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, args.vocab_size), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            print(f"loss {total.item() / dist.get_world_size():.6f}", flush=True)


def run(rank, world_size, steps, port, folder, sharded):
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    args = ModelArgs()
    torch.manual_seed(0)
    model = build(args)
    model.reset_parameters()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train(model, optimizer, steps, 0, rank, args)

    if sharded:
        checkpoint_dir = os.path.join(folder, "checkpoint")
        dcp.save({"app": AppState(model, optimizer)}, checkpoint_id=checkpoint_dir)
        resumed = build(args)
        resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=3e-3)
        dcp.load({"app": AppState(resumed, resumed_optimizer)}, checkpoint_id=checkpoint_dir)
    else:
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd = get_model_state_dict(model, options=full)
        optim_sd = get_optimizer_state_dict(model, optimizer, options=full)
        path = os.path.join(folder, "checkpoint.pt")
        if rank == 0:
            torch.save({"model": model_sd, "optim": optim_sd}, path)
        dist.barrier()

        resumed = build(args)
        resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=3e-3)
        loaded = torch.load(path, weights_only=True) if rank == 0 else {"model": {}, "optim": {}}
        load = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(resumed, loaded["model"], options=load)
        set_optimizer_state_dict(resumed, resumed_optimizer, loaded["optim"], options=load)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a.full_tensor(), b.full_tensor())
    train(resumed, resumed_optimizer, steps, steps, rank, args)
    print(f"Finished running FSDP2 example on rank {rank}.", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="FSDP2 on CPU")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--port", type=int, default=29512)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--folder", default=".")
    parser.add_argument("--dcp", action="store_true", help="a sharded checkpoint (DCP)")
    cli = parser.parse_args()
    mp.spawn(run, args=(cli.world_size, cli.steps, cli.port, cli.folder, cli.dcp),
             nprocs=cli.world_size, join=True)
