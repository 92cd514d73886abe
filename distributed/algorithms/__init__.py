"""PyTorch's `torch.distributed.algorithms` paths, so that scripts importing DDP's communication
hooks from there run unchanged; the hooks themselves live in `phalanx.distributed.comm_hooks`."""
