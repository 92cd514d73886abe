"""`torch.distributed.checkpoint.stateful.Stateful`: what `save` / `load` call on a value that
is not a tensor or a plain container (any object with both methods is treated so)."""


class Stateful:
    def state_dict(self):
        raise NotImplementedError

    def load_state_dict(self, state_dict):
        raise NotImplementedError
