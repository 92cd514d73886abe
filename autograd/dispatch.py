"""The one place where cross-cutting concerns see every op call.

Autocast, the profiler and ONNX export each push an *interceptor* here while they are active:
`interceptor(cls, args, kwargs, proceed)` must return the op's result, normally by calling
`proceed(args, kwargs)` (possibly with changed arguments: autocast casts them) and looking at
what comes back (the profiler times it, the exporter records it). Interceptors nest in push
order: the last pushed sees the call first. While none is active, `Function.apply` pays one
truthiness test of `interceptors`.
"""
from contextlib import contextmanager

interceptors = []


@contextmanager
def intercept(interceptor):
    """Route every `Function.apply` through `interceptor` inside the `with` block."""
    interceptors.append(interceptor)
    try:
        yield interceptor
    finally:
        interceptors.remove(interceptor)


def watching(fused=None):
    """Whether an interceptor that must see every primitive op (the profiler, ONNX export,
    autocast) is active: fused Functions then run as their composition, so that it sees the
    ops it knows. Interceptors marked `transparent` (bfloat16 compute, which works on any
    Function) do not count, nor those whose `handles(fused)` says they know the Function
    `fused` as it is (autocast, for the fused ones on its lists)."""
    return any(not getattr(i, "transparent", False) and
               not (fused is not None and hasattr(i, "handles") and i.handles(fused))
               for i in interceptors)


def call_intercepted(cls, args, kwargs, run):
    """Run `run(cls, args, kwargs)` through every active interceptor, innermost last."""
    chain = tuple(interceptors)
    if len(chain) == 1:                      # the usual case: one observer, one closure
        return chain[0](cls, args, kwargs, lambda a, k: run(cls, a, k))

    def step(depth, args, kwargs):
        if depth < 0:
            return run(cls, args, kwargs)
        return chain[depth](cls, args, kwargs, lambda a, k: step(depth - 1, a, k))

    return step(len(chain) - 1, args, kwargs)
