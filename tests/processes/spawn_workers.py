"""Functions the spawn tests run in child processes (importable by name, unlike test modules
under pytest's importlib mode). Kept free of torch so children start fast."""
import os
import signal
import sys
import time


def record(i, out_dir, tag):
    with open(os.path.join(out_dir, str(i)), "w") as f:
        f.write(f"{tag} {os.environ['RANK']} {os.environ['WORLD_SIZE']}")


def fail_or_sleep(i, out_dir, how):
    if i == 1:
        if how == "raise":
            raise ValueError(f"boom from {i}")
        if how == "exit":
            sys.exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)   # must be terminated by the parent long before this ends
    with open(os.path.join(out_dir, f"survived-{i}"), "w") as f:
        f.write("should have been terminated")


def all_reduce_rank(rank, world_size, out_dir):
    """The DDP tutorial's setup: explicit backend, rank and world size, MASTER_* set."""
    import phalanx as px
    import phalanx.distributed as dist
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = "12355"
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    t = px.tensor([float(rank + 1)])
    dist.all_reduce(t)
    with open(os.path.join(out_dir, str(rank)), "w") as f:
        f.write(f"{dist.get_rank()} {dist.get_world_size()} {t.item()}")
    dist.destroy_process_group()
