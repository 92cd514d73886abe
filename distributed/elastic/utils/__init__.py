"""`torch.distributed.elastic.utils`'s path: the elastic sampler (`data`)."""
