"""Recurrent layers as one Function per layer and direction, and the composed steps they fall
back to.

`RecurrentLayer` runs a whole sequence of one layer in one direction: the input projection of
every time step is one GEMM, the recurrence loops over time on arrays, and backward runs the
same loop in reverse, gathering each step's gate gradients so that the weight and input
gradients are again one GEMM each. It saves what each step's backward needs (the gate
activations, the cell states), not a graph node per elementwise op. A cell (`LSTMCell`, ...)
is the same Function over a sequence of length one.

Its backward is written on arrays, so it cannot be differentiated again: when a higher-order
gradient is asked for (`create_graph=True`), backward re-runs the layer with the composed
steps below, which are made of differentiable tensor ops, and differentiates those. While an
observer is on the dispatch point (autocast, the profiler, ONNX export), layers run the
composed steps too, so that each primitive is cast, timed or exported as it knows how.

Gate layouts are PyTorch's: LSTM (i, f, g, o), GRU (r, z, n) with n = tanh(W_in x + b_in +
r * (W_hn h + b_hn)).
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
    steps = xw.reshape(t, n, -1).unbind(0)
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


def _halve_sigmoid_rows(a):
    """A copy of LSTM weights (or bias) with the rows of the sigmoid gates (i, f, o) halved:
    then one tanh over all pre-activations gives tanh(x) for g and tanh(x / 2) for the others,
    and sigmoid(x) = (1 + tanh(x / 2)) / 2. Halving is exact in binary floating point."""
    n = a.shape[0] // 4
    out = a.copy()
    out[:2 * n] *= 0.5
    out[3 * n:] *= 0.5
    return out


def _sigmoid_from_tanh_(a):
    """tanh(x / 2) -> sigmoid(x), in place."""
    a *= 0.5
    a += 0.5


def _lstm_forward(xw, h, c, w_hh_t, w_hr_t, order):
    """xw (T, N, 4H): x W_ih^T + b with the sigmoid rows halved (as are w_hh_t's). Returns
    out (T, N, H or P), h_n, c_n and what backward needs, indexed by t."""
    xp = array_module(xw)
    t_len, n, g4 = xw.shape
    hs = g4 // 4
    acts = xp.empty_like(xw)                              # i, f, g, o after activation
    cells = xp.empty((t_len, n, hs), xw.dtype)            # c_t
    tanh_c = xp.empty_like(cells)
    full = xp.empty_like(cells) if w_hr_t is not None else None   # h_t before projection
    out = xp.empty((t_len, n, h.shape[-1]), xw.dtype)
    for t in order:
        a = acts[t]
        xp.matmul(h, w_hh_t, out=a)
        a += xw[t]
        xp.tanh(a, out=a)
        _sigmoid_from_tanh_(a[:, :2 * hs])
        _sigmoid_from_tanh_(a[:, 3 * hs:])
        c_t = cells[t]
        xp.multiply(a[:, hs:2 * hs], c, out=c_t)
        c_t += a[:, :hs] * a[:, 2 * hs:3 * hs]
        tc = tanh_c[t]
        xp.tanh(c_t, out=tc)
        if w_hr_t is None:
            xp.multiply(a[:, 3 * hs:], tc, out=out[t])
        else:
            xp.multiply(a[:, 3 * hs:], tc, out=full[t])
            xp.matmul(full[t], w_hr_t, out=out[t])
        h, c = out[t], c_t
    return out, h.copy(), c.copy(), (acts, cells, tanh_c, full)


def _lstm_backward(g_out, g_h, g_c, saved, c0, w_hh, w_hr, order, reverse):
    """Gradients of the gate pre-activations (T, N, 4H), of h_0, c_0 and of W_hr."""
    acts, cells, tanh_c, full = saved
    xp = array_module(acts)
    t_len, n, g4 = acts.shape
    hs = g4 // 4
    i, f, g, o = (acts[..., k * hs:(k + 1) * hs] for k in range(4))
    c_prev = _previous(cells, c0, reverse)
    # every factor of the gate gradients that does not depend on the incoming gradient, for
    # all steps at once: d_i = dc g i(1-i), d_f = dc c_prev f(1-f), d_g = dc i (1-g^2),
    # d_o = dh tanh(c) o(1-o), and dc = dh o (1 - tanh(c)^2) + dc_next
    factors = 1 - acts
    factors *= acts
    factors[..., :hs] *= g
    factors[..., hs:2 * hs] *= c_prev
    factors[..., 3 * hs:] *= tanh_c
    xp.multiply(g, g, out=factors[..., 2 * hs:3 * hs])
    xp.subtract(1, factors[..., 2 * hs:3 * hs], out=factors[..., 2 * hs:3 * hs])
    factors[..., 2 * hs:3 * hs] *= i
    dc_dh = tanh_c * tanh_c
    xp.subtract(1, dc_dh, out=dc_dh)
    dc_dh *= o
    per_gate = factors.reshape(t_len, n, 4, hs)
    d_gates = xp.empty_like(acts)
    d_gates4 = d_gates.reshape(t_len, n, 4, hs)
    d_out = xp.empty((t_len, n, w_hr.shape[0]), acts.dtype) if w_hr is not None else None
    dh, dc = g_h, g_c
    for t in reversed(order):
        dh_t = _grad_of_h(g_out, dh, t)
        if w_hr is not None:
            d_out[t] = dh_t
            dh_t = dh_t @ w_hr
        dct = dh_t * dc_dh[t]
        if dc is not None:
            dct += dc
        xp.multiply(dct[:, None, :], per_gate[t], out=d_gates4[t])
        xp.multiply(dh_t, factors[t, :, 3 * hs:], out=d_gates[t, :, 3 * hs:])
        dc = dct * f[t]
        dh = d_gates[t] @ w_hh
    gw_hr = None
    if w_hr is not None:
        gw_hr = d_out.reshape(t_len * n, -1).T @ full.reshape(t_len * n, hs)
    return d_gates, dh, dc, gw_hr


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
            w_in, w_rec = _halve_sigmoid_rows(w_in), _halve_sigmoid_rows(w_rec)
            b_in = None if b_in is None else _halve_sigmoid_rows(b_in)
        xw = (xd.reshape(t_len * n, i) @ w_in.T).reshape(t_len, n, -1)
        if b_in is not None:
            xw += b_in
        order = range(t_len - 1, -1, -1) if reverse else range(t_len)
        h = h0._data
        if mode == "LSTM":
            w_hr_t = w_hr._data.T if w_hr is not None else None
            out, h, c, saved = _lstm_forward(xw, h, c0._data, w_rec.T, w_hr_t, order)
        elif mode == "GRU":
            out, h, saved = _gru_forward(xw, h, w_rec.T, b_rec, order)
        else:
            if b_rec is not None:
                xw += b_rec
            out, h, saved = _simple_forward(xw, h, w_rec.T, mode == "RNN_RELU", order)
        out_t = make(out.reshape(t_len * n, -1) if x.ndim == 2 else out)
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
        xd = x._data.reshape(-1, *x._data.shape[-2:])
        t_len, n, i = xd.shape
        if g_out is not None:
            g_out = g_out.reshape(t_len, n, -1)
        gw_hr = None
        w_in, w_rec = ctx.weights
        if mode == "LSTM":
            d_x, gh0, gc0, gw_hr = _lstm_backward(g_out, g_h, g_c, ctx.arrays, c0._data, w_rec,
                                                  data(w_hr), order, ctx.reverse)
            d_h = d_x
            h_prev = _previous(out_t._data.reshape(t_len, n, -1), h0._data, ctx.reverse)
        elif mode == "GRU":
            d_x, d_h, gh0 = _gru_backward(g_out, g_h, ctx.arrays, w_rec, order)
            h_prev = ctx.arrays[-1]
        else:
            d_x, gh0 = _simple_backward(g_out, g_h, ctx.arrays, w_rec, mode == "RNN_RELU",
                                        order)
            d_h = d_x
            h_prev = ctx.arrays[-1]
        flat_x = d_x.reshape(t_len * n, -1)
        flat_h = d_h.reshape(t_len * n, -1)
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
            grads[4] = (flat_h.T @ h_prev.reshape(t_len * n, -1))
        if needs[5]:
            grads[5] = (flat_x.sum(0))
        if needs[6]:
            grads[6] = (flat_h.sum(0))
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
