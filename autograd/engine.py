"""The backward engine: orders the graph once, iteratively, then runs each node once.

Nodes run in dependency order (a node runs after every node that feeds it gradient); among
ready nodes the most recently created runs first, as in PyTorch, so gradients become ready in
reverse order of the forward pass on every rank (DDP's buckets rely on that).
"""
import functools
import heapq
import threading

from .function import RemovableHandle, TensorBase
from .grad_mode import _set, is_grad_enabled
from . import anomaly
from ..tensor.backend import writeable

_GRAD = TensorBase.grad


def _store_grad(leaf, g):
    leaf._grad = g


def _assign_grad(leaf, g):
    leaf.grad = g

_local = threading.local()
_backward_start_hooks = []
_node_observers = []  # the profiler's: see observe_nodes


def observe_nodes(observer):
    """`observer(node, run)` sees each node's backward: it must return `run()` (the profiler
    times it). Returns a handle with `.remove()`; while none is registered a node pays one
    truthiness test."""
    _node_observers.append(observer)
    return RemovableHandle(_node_observers, observer)


def register_backward_start_hook(hook):
    """`hook(leaves)` runs at the start of every `backward()`, with the set of leaf tensors the
    pass will accumulate into. It may return {leaf: array}, a home for the leaf's gradient
    (DDP's bucket views): where the leaf's `.grad` is None and exactly one gradient will reach
    it, `.grad` becomes that array, and the node that computes the gradient may write it there
    itself (`ctx.gradient_buffer`) instead of having it copied in. Returns a handle with
    `.remove()`."""
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
            if t._data.dtype.kind == "c":
                raise RuntimeError(
                    f"grad can be implicitly created only for real scalar outputs, got "
                    f"{t.dtype}; reduce to a real loss first, e.g. out.abs() or out.real")
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
    root_edges = [_edge_of(t) for t in tensors]

    # 1. which nodes run, and how many gradients each node and each leaf will receive
    capture = needed_below = None
    if inputs is None:
        deps, leaf_deps = _count_dependencies(root_edges)
        leaves = set(leaf_deps)
    else:
        capture = {}
        for i, t in enumerate(inputs):
            capture.setdefault(_edge_of(t), []).append(i)
        capture_leaves = {id(e[0]) for e in capture if e[1] == -1}
        needed, needed_below = _needed_for(root_edges, capture)
        deps, leaf_deps = _count_dependencies(root_edges, needed)
        leaves = {t for t in leaf_deps if id(t) in capture_leaves} if accumulate \
            else set(leaf_deps)

    # 2. run
    results = [None] * (len(inputs) if inputs is not None else 0)
    buffers = {}
    ready = []
    owned = {id(g._data) for g in grad_tensors}  # arrays never to alias: the caller's
    leaf_grads = {}  # leaf -> sum of the gradients delivered to it so far
    callbacks = []
    stack = getattr(_local, "callbacks", None)
    if stack is None:
        stack = _local.callbacks = []
    stack.append(callbacks)
    prev_mode = is_grad_enabled()
    _set(create_graph)
    try:
        homes = {}
        if accumulate and _backward_start_hooks:  # they may queue_callback()
            for hook in list(_backward_start_hooks):
                offered = hook(leaves)
                if offered and not create_graph:
                    homes.update(_usable_homes(offered, leaves, leaf_deps))

        def leaf_done(leaf):  # a leaf accumulates once, when all its gradients have arrived
            leaf_deps[leaf] -= 1
            if leaf_deps[leaf] == 0 and leaf in leaf_grads:
                _accumulate(leaf, leaf_grads.pop(leaf), create_graph, owned, homes.get(leaf))

        def deliver(edge, g):
            target, nr = edge
            if nr == -1:
                if capture is not None and edge in capture:
                    for i in capture[edge]:
                        results[i] = g if results[i] is None else results[i] + g
                if accumulate and target in leaves:
                    prev = leaf_grads.get(target)
                    leaf_grads[target] = g if prev is None else prev + g
                return
            if target not in deps:
                return
            buf = buffers.get(target)
            if buf is None:
                buf = buffers[target] = [None] * target.n_outputs
            buf[nr] = g if buf[nr] is None else buf[nr] + g

        for edge, g in zip(root_edges, grad_tensors):
            deliver(edge, g)
            if edge[1] == -1:
                leaf_done(edge[0])
        for node, d in deps.items():
            if d == 0:
                heapq.heappush(ready, (-node.seq, node))

        while ready:
            node = heapq.heappop(ready)[1]
            grads = buffers.pop(node, None)
            if grads is None:  # no gradient reached this node: it sends none on
                out = ()
            elif homes:
                out = _run_offering_homes(node, homes, grads, capture, results, needed_below)
            else:
                out = _run_node(node, grads, capture, results, needed_below)
            if not retain_graph and (needed_below is None or node in needed_below):
                node.release()   # a captured node that did not run keeps its saved values
            n_out = len(out)
            fed = []
            for i, edge in enumerate(node.edges):
                if edge is None:
                    continue
                g = out[i] if i < n_out else None
                if g is not None:
                    deliver(edge, g)
                tgt = edge[0]
                if edge[1] == -1:
                    fed.append(tgt)
                elif tgt in deps:
                    deps[tgt] -= 1
                    if deps[tgt] == 0:
                        heapq.heappush(ready, (-tgt.seq, tgt))
            # a node's leaves accumulate last input first: a layer's bias before its weight, as
            # in PyTorch's linear layers and in the reversed registration order DDP's buckets
            # start from (so rebuilding them in arrival order changes nothing for plain layers)
            for tgt in reversed(fed):
                leaf_done(tgt)
        for leaf, g in list(leaf_grads.items()):  # leaves fed by nodes that did not run
            _accumulate(leaf, g, create_graph, owned, homes.get(leaf))
        leaf_grads.clear()
        i = 0
        while i < len(callbacks):  # callbacks may queue more callbacks
            callbacks[i]()
            i += 1
    finally:
        _set(prev_mode)
        stack.pop()

    if not accumulate:
        for i, (t, r) in enumerate(zip(inputs, results)):
            if r is None and not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (inputs[{i}], shape "
                    f"{tuple(t.shape)}) appears to not have been used in the graph. Set "
                    f"allow_unused=True if this is the desired behavior.")
        return tuple(results)
    return None


def _count_dependencies(root_edges, needed=None):
    """Walk the graph once (iteratively) from the roots, over `needed` nodes only if given.

    Returns {node: edges into it from walked nodes} and {leaf: edges into it, roots included}.
    Edges to leaves are (tensor, -1); edges to nodes are (node, output_nr)."""
    deps, leaf_deps, stack = {}, {}, []
    for node, nr in root_edges:
        if nr == -1:
            leaf_deps[node] = leaf_deps.get(node, 0) + 1
        elif node not in deps and (needed is None or node in needed):
            deps[node] = 0
            stack.append(node)
    while stack:
        for edge in stack.pop().edges:
            if edge is None:
                continue
            tgt = edge[0]
            if edge[1] == -1:
                leaf_deps[tgt] = leaf_deps.get(tgt, 0) + 1
            elif tgt in deps:
                deps[tgt] += 1
            elif needed is None or tgt in needed:
                deps[tgt] = 1
                stack.append(tgt)
    return deps, leaf_deps


def _needed_for(root_edges, capture):
    """autograd.grad: the nodes that lead to a captured input, and those plus the captured
    non-leaf nodes themselves (they run only to hand over their output gradient)."""
    post, seen, stack = [], set(), []  # post-order of the graph, by iterative DFS
    for node, nr in root_edges:
        if nr != -1 and node not in seen:
            seen.add(node)
            stack.append((node, iter(node.edges)))
            while stack:
                cur, it = stack[-1]
                for e in it:
                    if e is not None and e[1] != -1 and e[0] not in seen:
                        seen.add(e[0])
                        stack.append((e[0], iter(e[0].edges)))
                        break
                else:
                    stack.pop()
                    post.append(cur)
    capture_leaves = {id(e[0]) for e in capture if e[1] == -1}
    capture_nodes = {e[0] for e in capture if e[1] != -1}
    needed_below = set()
    for node in post:  # post-order: a node's inputs are decided before the node
        for e in node.edges:
            if e is not None and (id(e[0]) in capture_leaves if e[1] == -1
                                  else e[0] in needed_below or e[0] in capture_nodes):
                needed_below.add(node)
                break
    return needed_below | (capture_nodes & seen), needed_below


def _run_node(node, grads, capture, results, needed_below):
    """Run one node's pre-hooks and backward; return its gradients (one per edge)."""
    if node.pre_hooks:
        for nr, hooks in node.pre_hooks.items():
            if grads[nr] is not None:
                for hook in list(hooks):
                    r = hook(grads[nr])
                    if r is not None:
                        grads[nr] = r
    if capture is not None:
        _capture_node_grads(capture, node, grads, results)
        if node not in needed_below:
            return ()
    if node.materialize_grads and any(g is None for g in grads):
        ref = next((g for g in grads if g is not None), None)
        grads = [g if g is not None else _zeros_for(node, i, ref)
                 for i, g in enumerate(grads)]
    try:
        out = _observed_backward(node, grads) if _node_observers else \
            node.fn.backward(node, *grads)
    except Exception:
        if anomaly.is_anomaly_enabled():
            anomaly.report_failure(node)
        raise
    if not isinstance(out, tuple):
        out = (out,)
    if node.post_hooks:
        for hook in list(node.post_hooks):
            replaced = hook(out, tuple(grads))
            if replaced is not None:
                out = tuple(replaced) if isinstance(replaced, (tuple, list)) else (replaced,)
    if len(out) < len(node.edges) and any(e is not None for e in node.edges[len(out):]):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of "
                           f"gradients (expected {len(node.edges)}, got {len(out)})")
    if anomaly.is_anomaly_enabled() and anomaly.is_anomaly_check_nan_enabled():
        anomaly.check_grads(node, out)
    return out


def _observed_backward(node, grads):
    def run():
        return node.fn.backward(node, *grads)
    for observer in _node_observers:
        run = functools.partial(observer, node, run)
    return run()


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


def _usable_homes(offered, leaves, leaf_deps):
    """The offered gradient homes the pass can write into: for leaves it accumulates into,
    without a gradient yet, that get exactly one gradient and have no hook that could swap it."""
    return {leaf: home for leaf, home in offered.items()
            if leaf in leaves and leaf_deps.get(leaf) == 1 and leaf.grad is None
            and not leaf._hooks and home.shape == leaf._data.shape
            and home.dtype == leaf._data.dtype}


def _run_offering_homes(node, homes, *args):
    """`_run_node`, telling the node (`ctx.gradient_buffer`) where its inputs' gradients have
    a home, for this run only (a retained graph may run again without them)."""
    offer = tuple(None if e is None or e[1] != -1 else homes.get(e[0]) for e in node.edges)
    if not any(h is not None for h in offer):
        return _run_node(node, *args)
    node._gradient_buffers = offer
    try:
        return _run_node(node, *args)
    finally:
        node.__dict__.pop("_gradient_buffers", None)


def _accumulate(leaf, g, create_graph, owned, home=None):
    """Add `g` into `leaf.grad` (after the leaf's hooks), then run its post-accumulate hooks.

    Without create_graph, `.grad` is a plain array of its own: a gradient array that is a view,
    read-only, or already held elsewhere (`owned`) is copied first. A leaf with a `home` (see
    register_backward_start_hook) gets that array as `.grad`, written by its node or copied in."""
    if leaf._hooks:
        for hook in list(leaf._hooks):
            r = hook(g)
            if r is not None:
                g = r
    gd, ld = g._data, leaf._data
    if gd.shape != ld.shape:
        raise RuntimeError(f"gradient of shape {tuple(gd.shape)} does not match its leaf tensor "
                           f"of shape {tuple(ld.shape)} (an op's backward is wrong)")
    if gd.dtype != ld.dtype:
        if gd.dtype.kind == "c" and ld.dtype.kind != "c":
            g = g.real  # a real leaf keeps the real part of a complex gradient (as PyTorch)
        g = g.to(leaf.dtype)
        gd = g._data
    cur = leaf.grad
    # the shape and dtype are checked above: the slot is written without the setter's checks
    # (a subclass with a grad property of its own, a sparse tensor, goes through it)
    store = _store_grad if type(leaf).grad is _GRAD else _assign_grad
    if create_graph:
        store(leaf, g if cur is None else cur + g)
    elif cur is None:
        if home is not None:
            if gd is not home:                    # computed elsewhere: moved in, one copy
                home[...] = gd
                gd = home
        elif gd.base is not None or id(gd) in owned or not writeable(gd) \
                or not gd.flags.c_contiguous:
            gd = gd.copy()
        owned.add(id(gd))
        store(leaf, g if gd is g._data and g.grad_fn is None and not g.requires_grad
              else g._like(gd) if hasattr(g, "_placements") else g._make(gd))  # a DTensor's
        #                                                                 stays one (TP)
    elif writeable(cur._data):
        cur._data += gd
        cur._version[0] += 1
    else:
        store(leaf, cur + g)
    if leaf._post_hooks:
        for hook in list(leaf._post_hooks):
            hook(leaf)
