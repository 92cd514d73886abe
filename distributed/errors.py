"""torch.distributed's exception types, so code that catches them catches Phalanx's errors:
the store's are `DistStoreError`s, a collective that fails because a peer did is a
`DistBackendError`, ranks that call different collectives (debug mode) raise a `DistError`.
All are RuntimeErrors, as in PyTorch. Standard library only: the launcher imports the store."""


class DistError(RuntimeError):
    """An error of the distributed package."""


class DistBackendError(DistError):
    """A collective or point-to-point operation failed in the backend."""


class DistNetworkError(DistError):
    """A network operation failed."""


class DistStoreError(DistError):
    """A store operation failed (or timed out)."""


class QueueEmptyError(DistStoreError):
    """A store queue was empty (PyTorch's queue_pop without blocking)."""
