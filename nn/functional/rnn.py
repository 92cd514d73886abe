"""Recurrent layers as one Function per layer and direction, and the composed steps they fall
back to.

`RecurrentLayer` runs a whole sequence of one layer in one direction: the input projection of
every time step is one GEMM, the recurrence loops over time on arrays, and backward runs the
same loop in reverse, gathering each step's gate gradients so that the weight and input
gradients are again one GEMM each. It saves what each step's backward needs (the gate
activations, the cell states), not a graph node per elementwise op. A cell (`LSTMCell`, ...)
is the same Function over a sequence of length one.

At the sizes of a word-level language model a step costs the number of array calls it makes,
so the LSTM kernels keep each step's arrays batch last with the gates in blocks
(`_gate_major`): every elementwise op of a step is then one call on one contiguous block
(NumPy is several times slower on strided slices of the same size), the sigmoid gates take
one tanh and one affine fix together, and the cell update is one multiply and one add.

Its backward is written on arrays, so it cannot be differentiated again: when a higher-order
gradient is asked for (`create_graph=True`), backward re-runs the layer with the composed
steps below, which are made of differentiable tensor ops, and differentiates those. While an
observer is on the dispatch point (autocast, the profiler, ONNX export), layers run the
composed steps too, so that each primitive is cast, timed or exported as it knows how.

Weights keep PyTorch's gate layouts, LSTM (i, f, g, o) and GRU (r, z, n) with
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); the LSTM kernels reorder copies of them.
"""
from ...autograd import Function, dispatch
from ...autograd import grad as autograd_grad
from ...autograd.grad_mode import enable_grad, is_grad_enabled
from ...tensor import Tensor, stack
from ...tensor.backend import array_module

make = Tensor._make
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}   # gate blocks per mode


# ---- the composed steps: differentiable tensor ops (`xw` = x W_ih^T + biases folded in) ----
def rnn_tanh_step(xw, h, w_hh, b_hh):
    return (xw + hidden(h, w_hh, b_hh)).tanh()


def rnn_relu_step(xw, h, w_hh, b_hh):
    return (xw + hidden(h, w_hh, b_hh)).relu()


def lstm_step(xw, h, c, w_hh, b_hh, w_hr=None):
    gates = xw + hidden(h, w_hh, b_hh)
    n = c.shape[-1]
    act = gates.sigmoid()
    i, f, o = act[:, :n], act[:, n:2 * n], act[:, 3 * n:]
    g = gates[:, 2 * n:3 * n].tanh()
    c = f * c + i * g
    h = o * c.tanh()
    if w_hr is not None:
        h = h @ w_hr.mT
    return h, c


def gru_step(xw, h, w_hh, b_hh):
    hw = hidden(h, w_hh, b_hh)
    n = h.shape[-1]
    rz = (xw[:, :2 * n] + hw[:, :2 * n]).sigmoid()
    r, z = rz[:, :n], rz[:, n:]
    new = (xw[:, 2 * n:] + r * hw[:, 2 * n:]).tanh()
    return new + z * (h - new)


def hidden(h, w_hh, b_hh):
    hw = h @ w_hh.mT
    return hw if b_hh is None else hw + b_hh


def composed_step(mode, xw, h, c, w_hh, b_hh, w_hr):
    """One time step of any cell: (h, c), c None unless LSTM."""
    if mode == "LSTM":
        return lstm_step(xw, h, c, w_hh, b_hh, w_hr)
    if mode == "GRU":
        return gru_step(xw, h, w_hh, b_hh), None
    if mode == "RNN_TANH":
        return rnn_tanh_step(xw, h, w_hh, b_hh), None
    return rnn_relu_step(xw, h, w_hh, b_hh), None


def fold_biases(mode, b_ih, b_hh):
    """(input bias, recurrent bias) with the two summed into the first where the cell allows:
    GRU keeps b_hh inside r * (W_hn h + b_hn)."""
    if b_ih is None or mode == "GRU":
        return b_ih, b_hh
    return b_ih + b_hh, None


def composed_layer(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
    """The layer over x (T, N, I) step by step with tensor ops: (out (T, N, H), h_n, c_n).
    A 2-D x (N, I) is one time step, and out is then (N, H)."""
    b_in, b_rec = fold_biases(mode, b_ih, b_hh)
    one_step = x.ndim == 2
    if one_step:
        x = x.unsqueeze(0)
    t, n, i = x.shape
    xw = x.reshape(t * n, i) @ w_ih.mT
    if b_in is not None:
        xw = xw + b_in
    steps = xw.reshape(t, n, xw.shape[-1]).unbind(0)   # sizes, not -1: n may be 0
    hs = []
    for xw_t in (reversed(steps) if reverse else steps):
        h, c = composed_step(mode, xw_t, h, c, w_hh, b_rec, w_hr)
        hs.append(h)
    if reverse:
        hs.reverse()
    return (hs[0] if one_step else stack(hs)), h, c


# ---- array kernels -----------------------------------------------------------------------
def _sigmoid_(a):
    """sigmoid in place, as (1 + tanh(a / 2)) / 2: no overflow for large |a|."""
    a *= 0.5
    array_module(a).tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _grad_of_h(g_out, dh, t):
    """The gradient reaching step t's h: from the output at t and from the step after it
    (one of them may be None, not both)."""
    if g_out is None:
        return dh
    return g_out[t] if dh is None else g_out[t] + dh


def _gate_major(a, sigmoid_scale=1.0, transposed=False):
    """LSTM weights (or bias) with the gate blocks reordered from PyTorch's (i, f, g, o) to
    (o, i, f, g), the sigmoid blocks (o, i, f) multiplied by `sigmoid_scale`: so the gates
    that take a sigmoid are one contiguous block, and so are those whose gradient is scaled
    by the cell state's (i, f, g). With a scale of 0.5, one tanh over all pre-activations gives
    tanh(x) for g and tanh(x / 2) for the others, and sigmoid(x) = (1 + tanh(x / 2)) / 2;
    halving is exact in binary floating point. `transposed` gives the (in, 4H) transpose as a
    contiguous array (BLAS multiplies by it faster than by a transposed view)."""
    xp = array_module(a)
    n = a.shape[0] // 4
    out = xp.empty(a.shape[::-1], a.dtype).T if transposed else xp.empty_like(a)
    if sigmoid_scale == 1.0:
        out[:n] = a[3 * n:]
        out[n:] = a[:3 * n]
    else:
        xp.multiply(a[3 * n:], sigmoid_scale, out=out[:n])
        xp.multiply(a[:2 * n], sigmoid_scale, out=out[n:3 * n])
        out[3 * n:] = a[2 * n:3 * n]
    return out.T if transposed else out


def _batch_last(a):
    """(T, N, K) -> (T, K, N), contiguous: each step's gates (or states) are then rows of N
    values, so an op on one gate block is an op on one contiguous block."""
    return array_module(a).ascontiguousarray(a.transpose(0, 2, 1))


def _lstm_forward(xw, h, c, w_rec, w_hr, order):
    """xw (T, 4H, N): the input projections (with the biases), batch last, gates in
    `_gate_major` order with the sigmoid rows halved (as are w_rec's (4H, P)). h (N, P) and c
    (N, H) start the sequence. Returns out (T, N, P), h_n, c_n and what backward needs (batch
    last and indexed by t).

    Each step's block of `acts` holds o, i, f, g after activation and then the cell state the
    step starts from: (i, f) * (g, c_prev) is then one multiply, and c_prev is saved for
    backward without a copy."""
    xp = array_module(xw)
    t_len, g4, n = xw.shape
    hs = g4 // 4
    acts = xp.empty((t_len, 5 * hs, n), xw.dtype)
    tanh_c = xp.empty((t_len, hs, n), xw.dtype)
    full = xp.empty_like(tanh_c) if w_hr is not None else None   # h_t before projection
    out = xp.empty((t_len, h.shape[-1], n), xw.dtype)
    c_n = xp.empty((hs, n), xw.dtype)
    # where each step leaves its cell state: the next step's c_prev, and c_n after the last
    cell_to = [acts[t, 4 * hs:] for t in order[1:]] + [c_n]
    acts[order[0], 4 * hs:] = c.T
    half = xp.full((), 0.5, xw.dtype)   # a 0-d array: cheaper per op than a Python float
    h = xp.ascontiguousarray(h.T)
    add, dot, multiply, tanh = xp.add, xp.dot, xp.multiply, xp.tanh   # looked up once
    prod = xp.empty((2 * hs, n), xw.dtype)
    for t, c_t in zip(order, cell_to):
        a = acts[t]
        gates = a[:4 * hs]
        add(dot(w_rec, h), xw[t], out=gates)
        tanh(gates, out=gates)
        sig = a[:3 * hs]                                  # tanh(x / 2) -> sigmoid(x)
        sig *= half
        sig += half
        multiply(a[hs:3 * hs], a[3 * hs:], out=prod)      # i g, f c_prev
        add(prod[:hs], prod[hs:], out=c_t)
        tc = tanh_c[t]
        tanh(c_t, out=tc)
        h = out[t]
        if w_hr is None:
            multiply(a[:hs], tc, out=h)
        else:
            multiply(a[:hs], tc, out=full[t])
            dot(w_hr, full[t], out=h)
    out = xp.ascontiguousarray(out.transpose(0, 2, 1))
    return out, out[order[-1]].copy(), xp.ascontiguousarray(c_n.T), (acts, tanh_c, full)


def _lstm_backward(g_out, g_h, g_c, saved, w_rec_t, w_hr, order):
    """Gradients of the gate pre-activations (T, N, 4H, PyTorch's gate order), of h_0, c_0 and
    of W_hr, from those of out (T, N, P), h_n and c_n (any may be None, not both of out and
    h_n). w_rec_t (P, 4H) is W_hh^T, its columns in `_gate_major` order, unscaled."""
    acts, tanh_c, full = saved
    xp = array_module(acts)
    t_len, g5, n = acts.shape
    hs = g5 // 5
    o, i, f, g = (acts[:, k * hs:(k + 1) * hs] for k in range(4))
    # every factor of the gradients that does not depend on the incoming gradient, for all
    # steps at once, in the order of `grads` below: dc = dh o (1 - tanh(c)^2) + dc_next,
    # d_o = dh tanh(c) o(1-o), d_i = dc g i(1-i), d_f = dc c_prev f(1-f), d_g = dc i (1-g^2)
    factors = xp.empty_like(acts)
    dc_dh, by_h, by_cell = factors[:, :hs], factors[:, :2 * hs], factors[:, 2 * hs:]
    # s(1-s) of o, i, f into the block after each, as contiguous ops over the whole array
    # (NumPy is several times slower on the strided slices; what lands in the dc and d_g
    # blocks is overwritten below)
    shift = hs * n
    moved, source = factors.reshape(-1)[shift:], acts.reshape(-1)[:acts.size - shift]
    xp.subtract(1, source, out=moved)
    moved *= source
    factors[:, hs:2 * hs] *= tanh_c
    factors[:, 2 * hs:4 * hs] *= acts[:, 3 * hs:]       # (i, f) by (g, c_prev)
    fg = factors[:, 4 * hs:]
    xp.multiply(g, g, out=fg)
    xp.subtract(1, fg, out=fg)
    fg *= i
    xp.multiply(tanh_c, tanh_c, out=dc_dh)
    xp.subtract(1, dc_dh, out=dc_dh)
    dc_dh *= o
    by_h = by_h.reshape(t_len, 2, hs, n)                 # dc and d_o: scaled by dh
    by_cell = by_cell.reshape(t_len, 3, hs, n)           # d_i, d_f, d_g: scaled by dc
    # each step's block: dc (scratch), then the gradients of o, i, f, g
    grads = xp.empty_like(acts)
    grads_by_h = grads[:, :2 * hs].reshape(t_len, 2, hs, n)
    grads_by_cell = grads[:, 2 * hs:].reshape(t_len, 3, hs, n)
    g_out = None if g_out is None else _batch_last(g_out)
    dh = None if g_h is None else g_h.T.copy()   # a copy: it is added to in place
    dc = None if g_c is None else xp.ascontiguousarray(g_c.T)
    if w_hr is not None:
        d_out = xp.empty((t_len, w_hr.shape[0], n), acts.dtype)
        w_hr_t = xp.ascontiguousarray(w_hr.T)
    dot, multiply = xp.dot, xp.multiply
    for t in reversed(order):
        if g_out is not None:   # dh is the step's own array (from dot, or a copy of g_h)
            dh = g_out[t] if dh is None else xp.add(dh, g_out[t], out=dh)
        dh_t = dh
        if w_hr is not None:
            d_out[t] = dh_t
            dh_t = dot(w_hr_t, dh_t)
        multiply(dh_t, by_h[t], out=grads_by_h[t])
        dct = grads[t, :hs]
        if dc is not None:
            dct += dc
        multiply(dct, by_cell[t], out=grads_by_cell[t])
        dc = dct * f[t]
        dh = dot(w_rec_t, grads[t, hs:])
    gw_hr = None
    if w_hr is not None:   # sum over t and the batch of d_out[t] full[t]^T
        gw_hr = xp.tensordot(d_out, full, axes=([0, 2], [0, 2]))
    # back to batch first and PyTorch's gate order (i, f, g, o)
    d_pre = xp.empty((t_len, n, 4 * hs), acts.dtype)
    d_pre[..., :3 * hs] = grads[:, 2 * hs:].transpose(0, 2, 1)
    d_pre[..., 3 * hs:] = grads[:, hs:2 * hs].transpose(0, 2, 1)
    return d_pre, xp.ascontiguousarray(dh.T), xp.ascontiguousarray(dc.T), gw_hr


def _previous(states, first_state, reverse):
    """The state each step starts from, indexed by t: (h_0, h_1, ...) forward, shifted the
    other way in reverse."""
    prev = array_module(states).empty_like(states)
    if reverse:
        prev[:-1], prev[-1] = states[1:], first_state
    else:
        prev[1:], prev[0] = states[:-1], first_state
    return prev


def _gru_forward(xw, h, w_hh_t, b_hh, order):
    xp = array_module(xw)
    t_len, n, _ = xw.shape
    hs = h.shape[-1]
    out = xp.empty((t_len, n, hs), xw.dtype)
    acts = xp.empty_like(xw)                          # r, z, n after activation
    hn = xp.empty((t_len, n, hs), xw.dtype)           # W_hn h + b_hn
    h_prev = xp.empty_like(out)
    for t in order:
        hw = h @ w_hh_t
        if b_hh is not None:
            hw += b_hh
        rz = xw[t, :, :2 * hs] + hw[:, :2 * hs]
        _sigmoid_(rz)
        r, z = rz[:, :hs], rz[:, hs:]
        new = r * hw[:, 2 * hs:]
        new += xw[t, :, 2 * hs:]
        xp.tanh(new, out=new)
        acts[t, :, :2 * hs] = rz
        acts[t, :, 2 * hs:] = new
        hn[t] = hw[:, 2 * hs:]
        h_prev[t] = h
        h = h - new
        h *= z
        h += new
        out[t] = h
    return out, h, (acts, hn, h_prev)


def _gru_backward(g_out, g_h, saved, w_hh, order):
    """Gradients of x W_ih^T + b_ih (T, N, 3H), of h W_hh^T + b_hh (T, N, 3H) and of h_0."""
    acts, hn, h_prev = saved
    xp = array_module(acts)
    hs = hn.shape[-1]
    d_x = xp.empty_like(acts)
    d_h = xp.empty_like(acts)
    dh = g_h
    for t in reversed(order):
        r, z, new = (acts[t, :, k * hs:(k + 1) * hs] for k in range(3))
        dh_t = _grad_of_h(g_out, dh, t)
        d_new = dh_t * (1 - z)
        d_new *= 1 - new * new
        dx, dhw = d_x[t], d_h[t]
        dx[:, 2 * hs:] = d_new
        xp.multiply(d_new, r, out=dhw[:, 2 * hs:])
        d_r = dx[:, :hs]
        xp.multiply(d_new, hn[t], out=d_r)
        d_r *= r * (1 - r)
        d_z = dx[:, hs:2 * hs]
        xp.subtract(h_prev[t], new, out=d_z)
        d_z *= dh_t
        d_z *= z * (1 - z)
        dhw[:, :2 * hs] = dx[:, :2 * hs]
        dh = dh_t * z
        dh += dhw @ w_hh
    return d_x, d_h, dh


def _simple_forward(xw, h, w_hh_t, relu, order):
    xp = array_module(xw)
    out = xp.empty((xw.shape[0], xw.shape[1], h.shape[-1]), xw.dtype)
    h_prev = xp.empty_like(out)
    for t in order:
        h_prev[t] = h
        h = xw[t] + h @ w_hh_t
        if relu:
            xp.maximum(h, 0, out=h)
        else:
            xp.tanh(h, out=h)
        out[t] = h
    return out, h, (out, h_prev)


def _simple_backward(g_out, g_h, saved, w_hh, relu, order):
    out, h_prev = saved
    xp = array_module(out)
    d_pre = xp.empty_like(out)
    dh = g_h
    for t in reversed(order):
        dh_t = _grad_of_h(g_out, dh, t)
        if relu:
            xp.multiply(dh_t, out[t] > 0, out=d_pre[t])
        else:
            xp.multiply(dh_t, 1 - out[t] * out[t], out=d_pre[t])
        dh = d_pre[t] @ w_hh
    return d_pre, dh


# ---- the Function ------------------------------------------------------------------------
class RecurrentLayer(Function):
    """(out, h_n[, c_n]) = one layer of an RNN/LSTM/GRU over x (T, N, I) in one direction."""

    @staticmethod
    def forward(ctx, mode, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        xd = x._data
        if xd.ndim == 2:    # a cell: one time step
            xd = xd[None]
        dtypes = {t._data.dtype for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
                  if t is not None}
        if len(dtypes) > 1:
            raise RuntimeError(f"{mode}: input, hidden states and weights must have the same "
                               f"dtype, got {sorted(map(str, dtypes))}; convert the input, "
                               f"e.g. x.to(weight.dtype)")
        t_len, n, i = xd.shape
        if t_len == 0:
            raise RuntimeError(f"{mode}: input sequence is empty (length 0)")
        b_in, b_rec = fold_biases(mode, None if b_ih is None else b_ih._data,
                                  None if b_hh is None else b_hh._data)
        w_in, w_rec = w_ih._data, w_hh._data
        ctx.weights = w_in, w_rec
        if mode == "LSTM":
            w_in_t, w_rec = _gate_major(w_in, 0.5, transposed=True), _gate_major(w_rec, 0.5)
            b_in = None if b_in is None else _gate_major(b_in, 0.5)
        else:
            w_in_t = w_in.T
        # explicit sizes (not -1) in every reshape: the batch may be empty
        xw = (xd.reshape(t_len * n, i) @ w_in_t).reshape(t_len, n, w_in.shape[0])
        if b_in is not None:
            xw += b_in
        order = range(t_len - 1, -1, -1) if reverse else range(t_len)
        h = h0._data
        if mode == "LSTM":
            out, h, c, saved = _lstm_forward(_batch_last(xw), h, c0._data, w_rec,
                                             None if w_hr is None else w_hr._data, order)
        elif mode == "GRU":
            out, h, saved = _gru_forward(xw, h, w_rec.T, b_rec, order)
        else:
            if b_rec is not None:
                xw += b_rec
            out, h, saved = _simple_forward(xw, h, w_rec.T, mode == "RNN_RELU", order)
        out_t = make(out.reshape(t_len * n, out.shape[-1]) if x.ndim == 2 else out)
        # backward reads the outputs' values: saving the output tensor makes an in-place
        # change to it an error at backward time instead of a wrong gradient
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, out_t)
        ctx.mode, ctx.reverse, ctx.arrays, ctx.order = mode, reverse, saved, order
        ctx.set_materialize_grads(False)
        outs = (out_t, make(h))
        if mode == "LSTM":
            outs += (make(c),)
        return outs

    @staticmethod
    def backward(ctx, g_out, g_h, g_c=None):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, out_t = ctx.saved_tensors
        inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        needs = ctx.needs_input_grad[2:]
        if is_grad_enabled():  # create_graph: differentiate the composed steps instead
            return (None, None) + _composed_grads(ctx, inputs, needs, (g_out, g_h, g_c))
        mode, order = ctx.mode, ctx.order
        data = lambda t: None if t is None else t._data  # noqa: E731
        g_out, g_h, g_c = data(g_out), data(g_h), data(g_c)
        if g_out is None and g_h is None:   # only c_n is used: h still carries gradient
            g_h = array_module(h0._data).zeros_like(h0._data)
        xd = x._data[None] if x.ndim == 2 else x._data
        t_len, n, i = xd.shape
        if g_out is not None:
            g_out = g_out.reshape(t_len, n, g_out.shape[-1])
        gw_hr = None
        w_in, w_rec = ctx.weights
        if mode == "LSTM":
            d_x, gh0, gc0, gw_hr = _lstm_backward(g_out, g_h, g_c, ctx.arrays,
                                                  _gate_major(w_rec, transposed=True),
                                                  data(w_hr), order)
            d_h = d_x
            h_prev = _previous(out_t._data.reshape(t_len, n, out_t.shape[-1]), h0._data,
                               ctx.reverse)
        elif mode == "GRU":
            d_x, d_h, gh0 = _gru_backward(g_out, g_h, ctx.arrays, w_rec, order)
            h_prev = ctx.arrays[-1]
        else:
            d_x, gh0 = _simple_backward(g_out, g_h, ctx.arrays, w_rec, mode == "RNN_RELU",
                                        order)
            d_h = d_x
            h_prev = ctx.arrays[-1]
        flat_x = d_x.reshape(t_len * n, d_x.shape[-1])
        flat_h = d_h.reshape(t_len * n, d_h.shape[-1])
        grads = [None] * 8
        if needs[0]:
            grads[0] = (flat_x @ w_in).reshape(x.shape)
        if needs[1]:
            grads[1] = gh0
        if needs[2]:
            grads[2] = gc0
        if needs[3]:
            grads[3] = (flat_x.T @ xd.reshape(t_len * n, i))
        if needs[4]:
            grads[4] = (flat_h.T @ h_prev.reshape(t_len * n, h_prev.shape[-1]))
        if needs[5]:
            grads[5] = (flat_x.sum(0))
        if needs[6]:   # the same sum when both biases are added before the recurrence
            grads[6] = grads[5].copy() if needs[5] and d_h is d_x else flat_h.sum(0)
        if needs[7]:
            grads[7] = gw_hr
        return (None, None) + tuple(None if g is None else make(g) for g in grads)


def _composed_grads(ctx, inputs, needs, grads):
    """The input gradients through the composed steps, as a differentiable graph."""
    wanted = [t for t, need in zip(inputs, needs) if need]
    with enable_grad():
        outs = composed_layer(ctx.mode, *inputs[:3], *inputs[3:], ctx.reverse)
    pairs = [(o, g) for o, g in zip(outs, grads) if o is not None and g is not None]
    res = iter(autograd_grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                             create_graph=True, allow_unused=True))
    return tuple(next(res) if need else None for need in needs)


def recurrent_layer(mode, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None,
                    reverse=False):
    """(out (T, N, H), h_n, c_n) of one layer over x (T, N, I); c_n is None unless LSTM."""
    if dispatch.watching():
        return composed_layer(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
    outs = RecurrentLayer.apply(mode, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    return outs if mode == "LSTM" else (outs[0], outs[1], None)
