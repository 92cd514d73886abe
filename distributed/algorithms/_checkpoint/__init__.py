"""`torch.distributed.algorithms._checkpoint`'s path: activation checkpointing and offloading
by wrapping modules (`checkpoint_wrapper`), as FSDP scripts apply it."""
