"""The backward engine: orders the graph once, iteratively, then runs each node once.

Nodes run in dependency order (a node runs after every node that feeds it gradient); among
ready nodes the most recently created runs first, as in PyTorch, so gradients become ready in
reverse order of the forward pass on every rank (DDP's buckets rely on that).
"""
import heapq
import threading

from .function import Node, RemovableHandle, TensorBase
from .grad_mode import _set, is_grad_enabled
from . import anomaly

_local = threading.local()
_backward_start_hooks = []


def register_backward_start_hook(hook):
    """`hook(leaves)` runs at the start of every `backward()`, with the set of leaf tensors the
    pass will accumulate into. Returns a handle with `.remove()`."""
    _backward_start_hooks.append(hook)
    return RemovableHandle(_backward_start_hooks, hook)


def queue_callback(callback):
    """Run `callback()` when the backward pass now running finishes (before it returns)."""
    stack = getattr(_local, "callbacks", None)
    if not stack:
        raise RuntimeError("queue_callback() can only be called while backward is running "
                           "(e.g. from a tensor hook)")
    stack[-1].append(callback)


def _edge_of(t):
    return (t.grad_fn, t._output_nr) if t.grad_fn is not None else (t, -1)


def _check_roots(tensors, grad_tensors):
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if not t.requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn "
                f"(shape {tuple(t.shape)}). Did you compute it under no_grad(), or forget "
                f"requires_grad=True on the inputs?")
        if g is None:
            if t._data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; got an output of "
                    f"shape {tuple(t.shape)}. Pass a gradient: out.backward(gradient) or "
                    f"reduce it first, e.g. out.sum().backward().")
        elif tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{tuple(g.shape)} and output[{i}] has a shape of "
                               f"{tuple(t.shape)}.")


def run_backward(tensors, grad_tensors, retain_graph=False, create_graph=False, inputs=None,
                 allow_unused=True, accumulate=True):
    """Shared core of `Tensor.backward`, `autograd.backward` and `autograd.grad`.

    accumulate=True adds into leaf `.grad` (restricted to `inputs` when given);
    accumulate=False returns the gradients of `inputs` instead.
    """
    _check_roots(tensors, grad_tensors)
    grad_tensors = [t.new_ones(t.shape) if g is None else g
                    for t, g in zip(tensors, grad_tensors)]

    # 1. discover the graph (iterative DFS) and a post-order of its nodes
    root_edges = [_edge_of(t) for t in tensors]
    post, seen, stack = [], set(), []
    for node, _ in root_edges:
        if isinstance(node, Node) and node not in seen:
            seen.add(node)
            stack.append((node, iter(node.edges)))
            while stack:
                cur, it = stack[-1]
                for e in it:
                    if e is not None and isinstance(e[0], Node) and e[0] not in seen:
                        seen.add(e[0])
                        stack.append((e[0], iter(e[0].edges)))
                        break
                else:
                    stack.pop()
                    post.append(cur)

    # 2. which nodes must run: all of them, or only those leading to `inputs`
    capture = None
    if inputs is not None:
        capture = {}
        for i, t in enumerate(inputs):
            capture.setdefault(_edge_of(t), []).append(i)
        capture_leaves = {id(e[0]) for e in capture if e[1] == -1}
        capture_nodes = {e[0] for e in capture if e[1] != -1}
        needed_below = set()  # nodes whose backward leads to a captured input
        for node in post:  # post-order: a node's inputs are decided before the node
            if any(e is not None and (e[0] in needed_below or e[0] in capture_nodes
                                      if isinstance(e[0], Node)
                                      else id(e[0]) in capture_leaves)
                   for e in node.edges):
                needed_below.add(node)
        needed = needed_below | (capture_nodes & seen)
    else:
        needed = needed_below = seen

    deps = dict.fromkeys(needed, 0)
    leaves = set()
    for node in needed:
        for e in node.edges:
            if e is not None:
                if isinstance(e[0], Node):
                    if e[0] in deps:
                        deps[e[0]] += 1
                else:
                    leaves.add(e[0])
    for node, nr in root_edges:
        if not isinstance(node, Node):
            leaves.add(node)
    if accumulate and inputs is not None:
        leaves = {t for t in leaves if id(t) in capture_leaves}
    if accumulate and _backward_start_hooks:
        for hook in list(_backward_start_hooks):
            hook(leaves)

    # 3. run
    results = [None] * (len(inputs) if inputs is not None else 0)
    buffers = {}
    ready = []
    owned = set()  # ids of arrays already stored as some leaf's .grad in this pass
    for g in grad_tensors:
        owned.add(id(g._data))  # never alias a caller's gradient
    callbacks = []
    if not hasattr(_local, "callbacks"):
        _local.callbacks = []
    _local.callbacks.append(callbacks)
    prev_mode = is_grad_enabled()
    _set(create_graph)
    try:
        def deliver(edge, g):
            target, nr = edge
            if nr == -1:
                if capture is not None and edge in capture:
                    for i in capture[edge]:
                        results[i] = g if results[i] is None else results[i] + g
                if accumulate and target in leaves:
                    _accumulate(target, g, create_graph, owned)
                return
            if target not in deps:
                return
            buf = buffers.get(target)
            if buf is None:
                buf = buffers[target] = [None] * target.n_outputs
            buf[nr] = g if buf[nr] is None else buf[nr] + g

        for edge, g in zip(root_edges, grad_tensors):
            deliver(edge, g)
        for node, d in deps.items():
            if d == 0:
                heapq.heappush(ready, (-node.seq, id(node), node))

        while ready:
            _, _, node = heapq.heappop(ready)
            grads = buffers.pop(node, None) or [None] * node.n_outputs
            if node.pre_hooks:
                for nr, hooks in node.pre_hooks.items():
                    if grads[nr] is not None:
                        for hook in list(hooks):
                            r = hook(grads[nr])
                            if r is not None:
                                grads[nr] = r
            if node._released:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time (through "
                    f"{node.name()}): its saved values were freed by the first backward. "
                    f"Pass retain_graph=True to the first backward() to keep them.")
            if capture is not None:
                _capture_node_grads(capture, node, grads, results)
                if node not in needed_below:
                    continue
            if node.materialize_grads and any(g is None for g in grads):
                ref = next((g for g in grads if g is not None), None)
                grads = [g if g is not None else _zeros_for(node, i, ref)
                         for i, g in enumerate(grads)]
            out = node.fn.backward(node, *grads)
            if not isinstance(out, tuple):
                out = (out,)
            if len(out) < len(node.edges) and any(
                    e is not None for e in node.edges[len(out):]):
                raise RuntimeError(f"function {node.name()} returned an incorrect number of "
                                   f"gradients (expected {len(node.edges)}, got {len(out)})")
            if anomaly.is_anomaly_enabled():
                anomaly.check_grads(node, out)
            if not retain_graph:
                node.release()
            for edge, g in zip(node.edges, out):
                if edge is None:
                    continue
                if g is not None:
                    deliver(edge, g)
                tgt = edge[0]
                if isinstance(tgt, Node) and tgt in deps:
                    deps[tgt] -= 1
                    if deps[tgt] == 0:
                        heapq.heappush(ready, (-tgt.seq, id(tgt), tgt))
        i = 0
        while i < len(callbacks):  # callbacks may queue more callbacks
            callbacks[i]()
            i += 1
    finally:
        _set(prev_mode)
        _local.callbacks.pop()

    if not accumulate:
        for i, (t, r) in enumerate(zip(inputs, results)):
            if r is None and not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (inputs[{i}], shape "
                    f"{tuple(t.shape)}) appears to not have been used in the graph. Set "
                    f"allow_unused=True if this is the desired behavior.")
        return tuple(results)
    return None


def _capture_node_grads(capture, node, grads, results):
    """autograd.grad w.r.t. a non-leaf tensor: its gradient is the node's output gradient."""
    for nr, g in enumerate(grads):
        idx = capture.get((node, nr))
        if idx is not None and g is not None:
            for i in idx:
                results[i] = g


def _zeros_for(node, i, ref):
    meta = getattr(node, "output_meta", None)
    if meta is None or ref is None:
        raise RuntimeError(f"{node.name()}: no gradient arrived for output {i} and its shape "
                           f"is unknown; call ctx.set_materialize_grads(False) and handle None")
    shape, dtype = meta[i]
    return ref.new_zeros(shape, dtype=dtype)


def _accumulate(leaf, g, create_graph, owned):
    if leaf._hooks:
        for hook in list(leaf._hooks):
            r = hook(g)
            if r is not None:
                g = r
    if tuple(g.shape) != tuple(leaf.shape):
        raise RuntimeError(f"gradient of shape {tuple(g.shape)} does not match its leaf tensor "
                           f"of shape {tuple(leaf.shape)} (an op's backward is wrong)")
    if g._data.dtype != leaf._data.dtype:
        g = g.to(leaf.dtype)
    cur = leaf.grad
    if create_graph:
        leaf.grad = g if cur is None else cur + g
    elif cur is None:
        arr = g._data
        if arr.base is not None or not arr.flags.writeable or not arr.flags.c_contiguous \
                or id(arr) in owned:
            g = g.detach().clone()
        elif g.requires_grad or g.grad_fn is not None:
            g = g.detach()
        owned.add(id(g._data))
        leaf.grad = g
    else:
        if cur._data.flags.writeable:
            cur._data += g._data
            cur._version[0] += 1
        else:
            leaf.grad = cur + g
    if leaf._post_hooks:
        for hook in list(leaf._post_hooks):
            hook(leaf)
