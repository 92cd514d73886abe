"""Averaging parameters over a process group (PyTorch's names and arguments)."""
from ...collectives import all_reduce
from ...world import get_world_size, resolve

__all__ = ["average_parameters", "get_params_to_average",
           "average_parameters_or_parameter_groups"]


def average_parameters(params, process_group):
    """Replace each parameter's values by their mean over `process_group` (None: the world),
    in one all-reduce of all of them; nothing on a rank outside the group."""
    if resolve(process_group) is None:
        return
    from ....tensor import cat
    params = list(params)
    if not params:
        return
    flat = cat([p.detach().reshape(-1) for p in params])
    flat /= get_world_size(process_group)
    all_reduce(flat, group=process_group)
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p).type_as(p)
        offset += p.numel()


def get_params_to_average(params):
    """The parameters (given as such or as optimizer param groups) that have a gradient."""
    from ....nn.parameter import Parameter
    chosen = []
    for param in params:
        if isinstance(param, Parameter):
            group = [param]
        elif isinstance(param, dict):
            group = param["params"]
        else:
            raise NotImplementedError(f"Parameter input of type {type(param)} is not supported")
        chosen += [p for p in group if p.grad is not None]
    return chosen


def average_parameters_or_parameter_groups(params, process_group):
    average_parameters(iter(get_params_to_average(params)), process_group)
