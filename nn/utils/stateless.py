"""`functional_call`: run a module with some of its parameters and buffers replaced by given
tensors (for example a MAML inner-loop update, whose gradients must reach the originals),
then put the module's own back. PyTorch deprecates this path in favour of
`torch.func.functional_call`, which behaves the same."""
import contextlib
import warnings


def _tied_names(module):
    """name -> every name of the same tensor (for parameters registered twice)."""
    by_tensor = {}
    for name, t in list(module.named_parameters(remove_duplicate=False)) + \
            list(module.named_buffers(remove_duplicate=False)):
        by_tensor.setdefault(id(t), set()).add(name)
    return {name: names for names in by_tensor.values() if len(names) > 1 for name in names}


def _untie(module, tensors):
    tied = _tied_names(module)
    out = dict(tensors)
    for given in [n for n in tensors if n in tied]:
        for other in tied[given]:
            if other in tensors and tensors[other] is not tensors[given]:
                raise ValueError(f"functional_call got multiple values for keys "
                                 f"{sorted(tied[given])}, which are tied. Consider using "
                                 f"tie_weights=False")
            out[other] = tensors[given]
    return out


def _slot(module, name):
    """(owning module, registry dict, attribute) of a dotted parameter or buffer name."""
    path, _, attr = name.rpartition(".")
    owner = module.get_submodule(path) if path else module
    for registry in (owner._parameters, owner._buffers):
        if attr in registry:
            return owner, registry, attr
    return owner, None, attr


@contextlib.contextmanager
def _reparametrize_module(module, tensors, tie_weights=False, strict=False):
    if tie_weights:
        tensors = _untie(module, tensors)
    if strict:
        known = {n for n, _ in module.named_parameters(remove_duplicate=False)} | \
            {n for n, _ in module.named_buffers(remove_duplicate=False)}
        unexpected = [k for k in tensors if k not in known]
        missing = [k for k in sorted(known) if k not in tensors]
        msgs = []
        if unexpected:
            msgs.append(f"Unexpected key(s): {', '.join(map(repr, unexpected))}.")
        if missing:
            msgs.append(f"Missing key(s): {', '.join(map(repr, missing))}.")
        if msgs:
            raise RuntimeError(f"Error(s) in reparametrizing for {type(module).__name__}:\n\t"
                               + "\n\t".join(msgs))
    saved = []
    try:
        for name, value in tensors.items():
            owner, registry, attr = _slot(module, name)
            if registry is None:   # not a parameter or buffer: a plain attribute, as PyTorch
                saved.append((owner, None, attr, owner.__dict__.get(attr, _MISSING)))
                object.__setattr__(owner, attr, value)
            else:
                saved.append((owner, registry, attr, registry[attr]))
                registry[attr] = value
        yield
    finally:
        for owner, registry, attr, original in reversed(saved):
            if registry is not None:
                registry[attr] = original
            elif original is _MISSING:
                owner.__dict__.pop(attr, None)
            else:
                object.__setattr__(owner, attr, original)


_MISSING = object()


def _functional_call(module, parameters_and_buffers, args=None, kwargs=None, *,
                     tie_weights=True, strict=False):
    if type(module).__name__ == "DataParallel":
        raise RuntimeError("The stateless API can't be used with nn.DataParallel module")
    kwargs = {} if kwargs is None else kwargs
    args = () if args is None else (args if isinstance(args, tuple) else (args,))
    if isinstance(parameters_and_buffers, (list, tuple)):
        merged = {}
        for d in parameters_and_buffers:
            for k, v in d.items():
                if k in merged:
                    raise ValueError(f"{k!r} appeared in multiple dictionaries; behavior of "
                                     f"functional call is ambiguous")
                merged[k] = v
        parameters_and_buffers = merged
    with _reparametrize_module(module, parameters_and_buffers, tie_weights, strict):
        return module(*args, **kwargs)


def functional_call(module, parameters_and_buffers, args=None, kwargs=None, *,
                    tie_weights=True, strict=False):
    """module(*args, **kwargs) with the named parameters/buffers replaced for this call."""
    warnings.warn("`torch.nn.utils.stateless.functional_call` is deprecated as of PyTorch "
                  "2.0 and will be removed in a future version of PyTorch. Please use "
                  "`torch.func.functional_call` instead which is a drop-in replacement.",
                  FutureWarning, stacklevel=2)
    return _functional_call(module, parameters_and_buffers, args, kwargs,
                            tie_weights=tie_weights, strict=strict)
