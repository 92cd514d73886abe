"""`torch.distributed.elastic.multiprocessing`: here, its `errors` module (`@record`)."""
