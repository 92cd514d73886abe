"""Recurrent layers: `RNN` (tanh/relu), `LSTM` (optionally projected), `GRU`, and their cells.

Parameter names, shapes and gate orders are PyTorch's (`weight_ih_l0`, `bias_hh_l1_reverse`,
...; LSTM gates i, f, g, o; GRU gates r, z, n), so state dicts move between the two directly.
Each layer projects the whole input sequence in one matmul; only the recurrent part runs per
time step. The steps are composed from tensor primitives and need no backward of their own.
A `PackedSequence` runs the same steps on a batch that shrinks as sequences end (it is sorted
longest first), so each sequence's final state is the one after its own last step.
"""
import math
import numbers

from ...tensor import Tensor
from ...tensor import empty, stack, cat, zeros
from ...autograd.grad_mode import no_grad
from ..functional.dropout import dropout
from ..parameter import Parameter
from ..utils.rnn import PackedSequence
from .module import Module


def _steps(x):
    return x.unbind(0)  # one backward for all steps (a stack), not one per slice


# ---- one time step of each cell type: `xw` is the input's projection (x W_ih^T + b_ih) -----
def _rnn_tanh_step(xw, h, w_hh, b_hh):
    return (xw + _hidden(h, w_hh, b_hh)).tanh()


def _rnn_relu_step(xw, h, w_hh, b_hh):
    return (xw + _hidden(h, w_hh, b_hh)).relu()


def _lstm_step(xw, h, c, w_hh, b_hh, w_hr=None):
    gates = xw + _hidden(h, w_hh, b_hh)
    n = c.shape[-1]
    act = gates.sigmoid()
    i, f, o = act[:, :n], act[:, n:2 * n], act[:, 3 * n:]
    g = gates[:, 2 * n:3 * n].tanh()
    c = f * c + i * g
    h = o * c.tanh()
    if w_hr is not None:
        h = h @ w_hr.mT
    return h, c


def _gru_step(xw, h, w_hh, b_hh):
    hw = _hidden(h, w_hh, b_hh)
    n = h.shape[-1]
    rz = (xw[:, :2 * n] + hw[:, :2 * n]).sigmoid()
    r, z = rz[:, :n], rz[:, n:]
    new = (xw[:, 2 * n:] + r * hw[:, 2 * n:]).tanh()
    return new + z * (h - new)


def _hidden(h, w_hh, b_hh):
    hw = h @ w_hh.mT
    return hw if b_hh is None else hw + b_hh


def _project(x, w, b):
    """x (..., I) @ w^T + b as one 2-D matmul."""
    shape = x.shape
    y = x.reshape(-1, shape[-1]) @ w.mT
    if b is not None:
        y = y + b
    return y.reshape(*shape[:-1], w.shape[0])


_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, checks and the layer/direction loop."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode!r}")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} should be a positive integer, got {v!r}")
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or \
                isinstance(dropout, bool):
            raise ValueError(f"dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if proj_size < 0:
            raise ValueError(f"proj_size should be a positive integer or zero to disable "
                             f"projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size ({proj_size}) has to be smaller than hidden_size "
                             f"({hidden_size})")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input = input_size if layer == 0 else real_hidden * num_directions
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name + sfx,
                            Parameter(empty(*shape, dtype=dtype, device=device)))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with no_grad():
            for w in self.parameters():
                w.uniform_(-stdv, stdv)

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        """Per layer and direction, the list of its parameters (as in PyTorch)."""
        per = len(self._flat_weights_names) // (self.num_layers * self._num_directions)
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    @property
    def _num_directions(self):
        return 2 if self.bidirectional else 1

    def flatten_parameters(self):
        """A no-op: PyTorch compacts weights for cuDNN here; our weights need no compacting."""

    def _layer_params(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        get = lambda n: getattr(self, n + sfx, None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), \
            get("weight_hr")

    # ---- checks ------------------------------------------------------------------------
    def _check_input(self, input):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D (unbatched) or 3D, got "
                             f"{input.ndim}D tensor of shape {list(input.shape)} instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]} (input shape "
                               f"{list(input.shape)})")
        if input._data.dtype.kind != "f":
            raise TypeError(f"{name}: input must be floating point, got {input.dtype}")

    def _check_hidden(self, hx, expected, what="hidden", batched=True):
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a Tensor, got "
                            f"{type(hx).__name__}")
        if tuple(hx.shape) != tuple(expected):
            layout = "(num_layers * num_directions, batch, size)" if batched else \
                "(num_layers * num_directions, size) for unbatched input"
            raise RuntimeError(f"{type(self).__name__}: Expected {what} size "
                               f"{tuple(expected)}, got {tuple(hx.shape)}; its layout is "
                               f"{layout}")

    # ---- forward -----------------------------------------------------------------------
    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        self._check_input(input)
        batched = input.ndim == 3
        if not batched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        h0, c0 = self._initial_states(hx, input, input.shape[1], batched)
        output, h_n, c_n = self._run_layers(
            input, h0, c0, lambda x, layer, d, h, c: self._run_direction(x, layer, d, h, c))
        if not batched:
            output = output.squeeze(1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if self.mode == "LSTM" else h_n)

    def _forward_packed(self, packed, hx):
        data = packed.data
        self._check_input(data)
        if data.ndim != 2:
            raise ValueError(f"{type(self).__name__}: a PackedSequence's data must be 2-D "
                             f"(total steps, input_size), got shape {list(data.shape)}")
        batch_sizes = [int(n) for n in packed.batch_sizes.tolist()]
        h0, c0 = self._initial_states(hx, data, batch_sizes[0], True)
        if packed.sorted_indices is not None:  # hx comes in the caller's batch order
            h0 = h0.index_select(1, packed.sorted_indices)
            c0 = c0.index_select(1, packed.sorted_indices) if c0 is not None else None
        output, h_n, c_n = self._run_layers(
            data, h0, c0, lambda x, layer, d, h, c:
            self._run_direction_packed(x, batch_sizes, layer, d, h, c))
        if packed.unsorted_indices is not None:
            h_n = h_n.index_select(1, packed.unsorted_indices)
            c_n = c_n.index_select(1, packed.unsorted_indices) if c_n is not None else None
        output = PackedSequence(output, packed.batch_sizes, packed.sorted_indices,
                                packed.unsorted_indices)
        return output, ((h_n, c_n) if self.mode == "LSTM" else h_n)

    def _initial_states(self, hx, input, batch, batched):
        """(h_0, c_0) as (num_layers * num_directions, batch, size) tensors (c_0 None unless
        LSTM), zeros when hx is None; checks a given hx's type and shape."""
        n_states = self.num_layers * self._num_directions
        h_size = self.proj_size or self.hidden_size
        is_lstm = self.mode == "LSTM"
        h_shape = (n_states, batch, h_size)
        c_shape = (n_states, batch, self.hidden_size)
        if hx is None:
            h0 = zeros(*h_shape, dtype=input.dtype, device=input.device)
            c0 = zeros(*c_shape, dtype=input.dtype, device=input.device) if is_lstm else None
            return h0, c0
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
            h0, c0 = hx
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{type(self).__name__}: hx must be a Tensor, not a "
                                f"tuple (only LSTM takes (h_0, c_0))")
            h0, c0 = hx, None
        unb = lambda s: s if batched else (s[0], s[2])  # noqa: E731
        self._check_hidden(h0, unb(h_shape), "hidden[0]" if is_lstm else "hidden", batched)
        if is_lstm:
            self._check_hidden(c0, unb(c_shape), "hidden[1]", batched)
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if is_lstm else None
        return h0, c0

    def _run_layers(self, x, h0, c0, run_direction):
        """Every layer and direction in turn: (output, h_n, c_n); dropout between layers."""
        is_lstm = self.mode == "LSTM"
        h_init = _steps(h0)
        c_init = _steps(c0) if is_lstm else None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self._num_directions):
                k = layer * self._num_directions + direction
                out, h, c = run_direction(x, layer, direction, h_init[k],
                                          c_init[k] if is_lstm else None)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if len(outs) == 1 else cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, training=True)
        return x, stack(h_n), (stack(c_n) if is_lstm else None)

    def _step(self, xw_t, h, c, w_hh, b_hh, w_hr):
        mode = self.mode
        if mode == "LSTM":
            return _lstm_step(xw_t, h, c, w_hh, b_hh, w_hr)
        if mode == "GRU":
            return _gru_step(xw_t, h, w_hh, b_hh), None
        if mode == "RNN_TANH":
            return _rnn_tanh_step(xw_t, h, w_hh, b_hh), None
        return _rnn_relu_step(xw_t, h, w_hh, b_hh), None

    def _projected_input(self, x, layer, direction):
        """x W_ih^T (+ biases, folded where the cell allows) and the recurrent weights."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_params(layer, direction)
        fold = b_ih is not None and self.mode != "GRU"  # GRU keeps b_hh inside r * (W h + b)
        xw = _project(x, w_ih, (b_ih + b_hh) if fold else b_ih)
        return xw, w_hh, (None if fold else b_hh), w_hr

    def _run_direction(self, x, layer, direction, h, c):
        """One layer in one direction over the sequence x (T, N, I): (out (T, N, H), h, c)."""
        xw, w_hh, b_hh, w_hr = self._projected_input(x, layer, direction)
        steps = _steps(xw)
        if direction:
            steps = steps[::-1]
        hs = []
        for xw_t in steps:
            h, c = self._step(xw_t, h, c, w_hh, b_hh, w_hr)
            hs.append(h)
        if direction:
            hs.reverse()
        if not hs:
            raise RuntimeError(f"{type(self).__name__}: input sequence is empty (length 0)")
        return stack(hs), h, c

    def _run_direction_packed(self, x, batch_sizes, layer, direction, h0, c0):
        """One layer in one direction over packed rows x (sum(batch_sizes), I). Forward, the
        batch shrinks as sequences end, and each ended sequence keeps its last state; in
        reverse it grows, and each sequence starts from its own initial state."""
        xw, w_hh, b_hh, w_hr = self._projected_input(x, layer, direction)
        steps = xw.split(batch_sizes)
        outs = []
        if not direction:
            h, c = h0, c0
            ended_h, ended_c = [], []
            for xw_t in steps:
                n = xw_t.shape[0]
                if n < h.shape[0]:
                    ended_h.append(h[n:])
                    h = h[:n]
                    if c is not None:
                        ended_c.append(c[n:])
                        c = c[:n]
                h, c = self._step(xw_t, h, c, w_hh, b_hh, w_hr)
                outs.append(h)
            h = cat([h] + ended_h[::-1]) if ended_h else h
            c = cat([c] + ended_c[::-1]) if ended_c else c
        else:
            n_last = batch_sizes[-1]
            h = h0[:n_last]
            c = c0[:n_last] if c0 is not None else None
            for xw_t in reversed(steps):
                n, m = xw_t.shape[0], h.shape[0]
                if n > m:
                    h = cat([h, h0[m:n]])
                    c = cat([c, c0[m:n]]) if c is not None else None
                h, c = self._step(xw_t, h, c, w_hh, b_hh, w_hr)
                outs.append(h)
            outs.reverse()
        return cat(outs), h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh"
                    else "")


class LSTM(RNNBase):
    """Long short-term memory; `forward(input, (h_0, c_0))` returns
    `output, (h_n, c_n)`. With `proj_size > 0`, h is projected by `weight_hr_l{k}`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device=device, dtype=dtype)


class GRU(RNNBase):
    """Gated recurrent unit: r, z, n gates as in PyTorch."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


# ---- cells ---------------------------------------------------------------------------------
class RNNCellBase(Module):
    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        g = num_chunks * hidden_size
        self.weight_ih = Parameter(empty(g, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(g, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(empty(g, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(g, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with no_grad():
            for w in self.parameters():
                w.uniform_(-stdv, stdv)

    def _prepare(self, input, hx, n_states=1):
        """Checks; returns (input (N, I), states as (N, H) tensors, batched)."""
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            shape = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {shape}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got "
                               f"{input.shape[-1]} expected {self.input_size} (input shape "
                               f"{list(input.shape)})")
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        n = input.shape[0]
        if hx is None:
            states = [zeros(n, self.hidden_size, dtype=input.dtype, device=input.device)
                      for _ in range(n_states)]
        else:
            states = list(hx) if n_states > 1 else [hx]
            for i, s in enumerate(states):
                want = (n, self.hidden_size) if batched else (self.hidden_size,)
                if not isinstance(s, Tensor) or tuple(s.shape) != want:
                    got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                    what = f"hidden[{i}]" if n_states > 1 else "hidden"
                    raise RuntimeError(f"{name}: Expected {what} size {want}, got {got}")
            if not batched:
                states = [s.unsqueeze(0) for s in states]
        return input, states, batched

    def _xw(self, input):
        xw = input @ self.weight_ih.mT
        return xw if self.bias_ih is None else xw + self.bias_ih

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx)
        step = _rnn_tanh_step if self.nonlinearity == "tanh" else _rnn_relu_step
        h = step(self._xw(x), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._prepare(input, hx, 2)
        h, c = _lstm_step(self._xw(x), h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx)
        h = _gru_step(self._xw(x), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)
