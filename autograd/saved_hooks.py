"""Hooks on what backward saves (`torch.autograd.graph.saved_tensors_hooks`, `save_on_cpu`,
`disable_saved_tensors_hooks`, and a node's `_raw_saved_*.register_hooks`).

Under `saved_tensors_hooks(pack, unpack)` every op that records a backward node hands each
tensor it keeps for backward to `pack` once its forward has run (tensors given to
`save_for_backward`, and arrays or tensors kept as ctx attributes: the masks, indices and
columns an op keeps are saved tensors too), and stores what `pack` returned instead; backward
gets `unpack(packed)` back. Nodes made without hooks pay nothing: hooks are looked up only
while some thread has them on, and a hooked node switches to the `HookedNode` class.
"""
import threading

from .function import Node, TensorBase, _holds_data

# set by the tensor package: an array kept by an op reaches the hooks as a Tensor
wrap_array = None


class _Stack(threading.local):
    def __init__(self):
        self.hooks = []               # (pack, unpack), innermost last
        self.disabled = None          # the error message, inside disable_saved_tensors_hooks


_stack = _Stack()
active = [0]                         # hook contexts open in any thread (the cheap test)


class HookedNode(Node):
    """A node whose saved tensors are `SavedTensor`s (packed by hooks, or given hooks by
    `_raw_saved_x.register_hooks`); what it kept as ctx attributes is unpacked when read."""

    __slots__ = ()

    @property
    def saved_tensors(self):
        if self._released:
            raise self._freed_error()
        saved = self._saved or ()
        for i, s in enumerate(saved):
            if s is not None:
                s.check_version(i, self)
        return tuple(None if s is None else s.unpack() for s in saved)

    def release(self):
        packed = self.__dict__.pop("_packed", None) or {}
        for s in self._saved or ():
            if s is not None:
                s.free()
        Node.release(self)
        if packed:
            self.__dict__["_freed"] = self.__dict__.get("_freed", frozenset()) | set(packed)

    def __getattr__(self, name):
        packed = self.__dict__.get("_packed")
        if packed is not None and name in packed:
            return unpack_value(packed[name])
        return Node.__getattr__(self, name)


NOT_SAVED = object()


def saved_by_name(node, name):
    """`grad_fn._saved_self` / `_raw_saved_self` (PyTorch's names, for the ops that declare
    `saved_names`): the saved tensor (None if it was not needed), or its `SavedTensor`."""
    raw = name.startswith("_raw_")
    key = name[len("_raw_saved_" if raw else "_saved_"):]
    names = getattr(node.fn, "saved_names", ())
    if key not in names or node._saved is None and not node._released:
        return NOT_SAVED
    if node._released:
        raise node._freed_error()
    i = names.index(key)
    if not raw:
        t = node.saved_tensors[i]
        return t if t is None or t.grad_fn is not node else _alias(t)
    if type(node) is Node:                 # hooks may be given later: hold SavedTensors
        node._saved = tuple(None if t is None else SavedTensor(t, version=v)
                            for t, v in zip(node._saved, node._saved_versions))
        node.__class__ = HookedNode
        node.__dict__.setdefault("_packed", {})
    return node._saved[i]


def _alias(output):
    """A saved output reads back as a new tensor object on the same data and graph position,
    as in PyTorch (where a node does not hold its own output)."""
    alias = type(output)._make(output._data)
    alias.requires_grad, alias.grad_fn = output.requires_grad, output.grad_fn
    alias._output_nr, alias._version = output._output_nr, output._version
    return alias


def seal(ctx):
    """Pack what the just-recorded node `ctx` saved, with this thread's innermost hooks."""
    if not _stack.hooks:
        return
    pack, unpack = _stack.hooks[-1]
    _stack.hooks.pop()                # a pack hook's own ops save nothing through it
    try:
        if ctx._saved is not None:
            ctx._saved = tuple(None if t is None else SavedTensor(t, pack, unpack)
                               for t in ctx._saved)
        stash = ctx.__dict__
        kept = {k: _pack_value(v, pack, unpack) for k, v in stash.items() if _holds_data(v)}
    finally:
        _stack.hooks.append((pack, unpack))
    for k in kept:
        del stash[k]
    ctx.__class__ = HookedNode
    stash["_packed"] = kept


def _pack_value(value, pack, unpack):
    if isinstance(value, (tuple, list)):
        return type(value)(_pack_value(v, pack, unpack) for v in value)
    if isinstance(value, dict):
        return {k: _pack_value(v, pack, unpack) for k, v in value.items()}
    if isinstance(value, TensorBase):
        return SavedTensor(value, pack, unpack)
    if hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__"):
        return SavedTensor(wrap_array(value), pack, unpack, as_array=True)
    return value


def unpack_value(value):
    """The inverse of `_pack_value`: run the unpack hooks of whatever `value` holds."""
    if isinstance(value, (tuple, list)):
        return type(value)(unpack_value(v) for v in value)
    if isinstance(value, dict):
        return {k: unpack_value(v) for k, v in value.items()}
    if isinstance(value, SavedTensor):
        return value.unpack()
    return value


class SavedTensor:
    """One tensor saved for backward: held as it is, or as what a pack hook made of it.

    `register_hooks(pack, unpack)` (PyTorch's `grad_fn._raw_saved_x.register_hooks`) packs it
    now; it may be set once per saved tensor, and never on one saved as None."""

    __slots__ = ("_tensor", "_packed", "_unpack", "_counter", "_version", "_as_array",
                 "_freed")

    def __init__(self, tensor, pack=None, unpack=None, as_array=False, version=None):
        self._counter = tensor._version
        self._version = tensor._version[0] if version is None else version
        self._as_array = as_array
        self._tensor, self._packed, self._unpack = tensor, None, None
        self._freed = False
        if pack is not None:
            self._set(pack, unpack)

    def _set(self, pack, unpack):
        if not (callable(pack) and callable(unpack)):
            raise TypeError(f"pack_hook and unpack_hook must be callable, got "
                            f"{type(pack).__name__} and {type(unpack).__name__}")
        tensor, version = self._tensor, self._counter[0]
        self._packed, self._unpack, self._tensor = pack(tensor), unpack, None
        if self._counter[0] != version:
            raise RuntimeError("A saved tensor pack hook is modifying its input in place. "
                               "Tensors provided as input to pack hook can not be modified "
                               "by in-place operations as this can lead to unexpected "
                               "side-effects. Return a modified copy (e.g. x.clone().mul_(2)) "
                               "instead.")

    def register_hooks(self, pack_hook, unpack_hook):
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or to access saved "
                "tensors after they have already been freed): register_hooks came after the "
                "saved tensors were freed by backward.")
        if self._unpack is not None:
            raise RuntimeError("SavedTensor hooks have already been set: register_hooks may "
                               "be called once per saved tensor.")
        self._set(pack_hook, unpack_hook)

    def unpack(self):
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or to access saved "
                "tensors after they have already been freed). Pass retain_graph=True to the "
                "first backward() to keep them.")
        if self._unpack is None:
            tensor = self._tensor
        else:
            tensor = self._unpack(self._packed)
            if not isinstance(tensor, TensorBase):
                raise TypeError(f"Output of saved tensor unpack_hook expected to be a Tensor "
                                f"but got result of type {type(tensor).__name__}")
        return tensor._data if self._as_array else tensor

    def check_version(self, index, node):
        # packed, it is the hooks' copy: PyTorch then leaves in-place changes to the user
        if self._unpack is None and self._counter[0] != self._version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: saved tensor {index} of {node.name()} is at version "
                f"{self._counter[0]}; expected version {self._version} instead. Hint: "
                f"replace the in-place operation (e.g. x.add_(y) -> x = x + y) or clone the "
                f"tensor before modifying it.")

    def free(self):
        self._tensor = self._packed = None
        self._freed = True


class saved_tensors_hooks:
    """Context manager: ops recorded inside pack what they save with `pack_hook(tensor)` and
    backward reads `unpack_hook(packed)` (which must give a tensor equal to the one packed)."""

    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook, self.unpack_hook = pack_hook, unpack_hook

    def __enter__(self):
        if _stack.disabled is not None:
            raise RuntimeError(_stack.disabled)
        _stack.hooks.append((self.pack_hook, self.unpack_hook))
        active[0] += 1
        return self

    def __exit__(self, *exc):
        _stack.hooks.pop()
        active[0] -= 1


class save_on_cpu(saved_tensors_hooks):
    """Keep saved tensors in CPU memory during forward and move each back to its device when
    backward needs it (activation offloading). `pin_memory=True` copies into page-locked
    memory, for asynchronous copies back to a GPU."""

    def __init__(self, pin_memory=False, device_type="cuda"):
        if device_type not in ("cuda", "cpu"):
            raise NotImplementedError(f"save_on_cpu(device_type={device_type!r}): Phalanx runs "
                                      f"on 'cuda' and 'cpu' devices")

        def pack(tensor):
            packed = tensor.cpu()
            if pin_memory and tensor.is_cuda:
                packed = packed.pin_memory()
            return tensor.device, packed

        def unpack(packed):
            device, tensor = packed
            return tensor.to(device, non_blocking=pin_memory)

        super().__init__(pack, unpack)


class disable_saved_tensors_hooks:
    """Context manager under which `saved_tensors_hooks` raises `RuntimeError(error_message)`
    (for code whose saving must not be redirected)."""

    def __init__(self, error_message):
        self.error_message = error_message

    def __enter__(self):
        self.prev, _stack.disabled = _stack.disabled, self.error_message
        return self

    def __exit__(self, *exc):
        _stack.disabled = self.prev


__all__ = ["saved_tensors_hooks", "save_on_cpu", "disable_saved_tensors_hooks",
           "SavedTensor"]
