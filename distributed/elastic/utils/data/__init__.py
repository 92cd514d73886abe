"""`torch.distributed.elastic.utils.data`: the sampler torchelastic's examples resume with."""
from .elastic_distributed_sampler import ElasticDistributedSampler

__all__ = ["ElasticDistributedSampler"]
