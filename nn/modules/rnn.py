"""Recurrent layers: `RNN` (tanh/relu), `LSTM` (optionally projected), `GRU`, and their cells.

Parameter names, shapes and gate orders are PyTorch's (`weight_ih_l0`, `bias_hh_l1_reverse`,
...; LSTM gates i, f, g, o; GRU gates r, z, n), so state dicts move between the two directly.
Each layer and direction runs as one fused Function (`nn/functional/rnn.py`): the input
projection of all time steps is one matmul, and only the recurrent part runs per time step,
forward and backward, on arrays. A cell is the same Function over one step.
A `PackedSequence` runs on a batch that shrinks as sequences end (it is sorted longest first),
so each sequence's final state is the one after its own last step: each run of steps with the
same batch size is one fused call.
"""
import math
import numbers

from ...tensor import Tensor
from ...tensor import empty, stack, cat, zeros
from ...autograd.grad_mode import no_grad
from ..functional.dropout import dropout
from ..functional.rnn import GATES, recurrent_layer
from ..parameter import Parameter
from ..utils.rnn import PackedSequence
from .module import Module


_ABSENT = object()


def _steps(x):
    return x.unbind(0)  # one backward for all steps (a stack), not one per slice


def _runs(batch_sizes):
    """(first row, steps, batch size) of each run of equal batch sizes in a packed batch."""
    runs, start = [], 0
    for n in batch_sizes:
        if runs and runs[-1][2] == n:
            runs[-1][1] += 1
        else:
            runs.append([start, 1, n])
        start += n
    return runs


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, checks and the layer/direction loop."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        if mode not in GATES:
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
        gate_size = GATES[mode] * hidden_size
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
        plain, params = self.__dict__, self._parameters

        def get(name):
            # what getattr finds, without Module.__getattr__'s cost in the common cases: a
            # plain attribute (a weight that weight_norm computes) first, then a parameter
            name += sfx
            found = plain.get(name, params.get(name, _ABSENT))
            return getattr(self, name, None) if found is _ABSENT else found
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), \
            (get("weight_hr") if self.proj_size else None)

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
        if hx is None:   # zeros, without building and splitting a stacked tensor
            h0, c0 = self._zero_states(input, input.shape[1])
        else:
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

    def _zero_states(self, input, batch):
        """hx=None: the initial (h, c) of every layer and direction as lists, all the same
        zero tensors (the layers only read them); c is None unless LSTM."""
        n_states = self.num_layers * self._num_directions
        h = zeros(batch, self.proj_size or self.hidden_size, dtype=input.dtype,
                  device=input.device)
        if self.mode != "LSTM":
            return [h] * n_states, None
        c = zeros(batch, self.hidden_size, dtype=input.dtype, device=input.device)
        return [h] * n_states, [c] * n_states

    def _run_layers(self, x, h0, c0, run_direction):
        """Every layer and direction in turn: (output, h_n, c_n); dropout between layers.
        h0 and c0 are (num_layers * num_directions, batch, size) tensors or lists of the
        (batch, size) states."""
        is_lstm = self.mode == "LSTM"
        h_init = h0 if isinstance(h0, list) else _steps(h0)
        c_init = c0 if c0 is None or isinstance(c0, list) else _steps(c0)
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

    def _run_direction(self, x, layer, direction, h, c):
        """One layer in one direction over the sequence x (T, N, I): (out (T, N, H), h, c)."""
        if x.shape[0] == 0:
            raise RuntimeError(f"{type(self).__name__}: input sequence is empty (length 0)")
        w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_params(layer, direction)
        return recurrent_layer(self.mode, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr,
                               reverse=bool(direction))

    def _run_direction_packed(self, x, batch_sizes, layer, direction, h0, c0):
        """One layer in one direction over packed rows x (sum(batch_sizes), I). Forward, the
        batch shrinks as sequences end, and each ended sequence keeps its last state; in
        reverse it grows, and each sequence starts from its own initial state. Each run of
        steps with the same batch size is one fused call over a (steps, batch) block."""
        params = self._layer_params(layer, direction)
        runs = _runs(batch_sizes)
        outs = []
        if not direction:
            h, c = h0, c0
            ended_h, ended_c = [], []
            for start, steps, n in runs:
                if n < h.shape[0]:
                    ended_h.append(h[n:])
                    h = h[:n]
                    if c is not None:
                        ended_c.append(c[n:])
                        c = c[:n]
                out, h, c = self._run_block(x, start, steps, n, h, c, params, False)
                outs.append(out)
            h = cat([h] + ended_h[::-1]) if ended_h else h
            c = cat([c] + ended_c[::-1]) if ended_c else c
        else:
            n_last = batch_sizes[-1]
            h = h0[:n_last]
            c = c0[:n_last] if c0 is not None else None
            for start, steps, n in reversed(runs):
                m = h.shape[0]
                if n > m:
                    h = cat([h, h0[m:n]])
                    c = cat([c, c0[m:n]]) if c is not None else None
                out, h, c = self._run_block(x, start, steps, n, h, c, params, True)
                outs.append(out)
            outs.reverse()
        return (cat(outs) if len(outs) > 1 else outs[0]), h, c

    def _run_block(self, x, start, steps, n, h, c, params, reverse):
        """The fused layer over packed rows start ... start + steps * n (steps of n rows)."""
        block = x[start:start + steps * n].reshape(steps, n, x.shape[-1])
        out, h, c = recurrent_layer(self.mode, block, h, c, *params, reverse=reverse)
        return out.reshape(steps * n, out.shape[-1]), h, c

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
        self.nonlinearity = nonlinearity  # not printed: PyTorch's RNN repr leaves it out


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

    def _run(self, mode, x, h, c=None):
        """One fused step: (h, c), c None unless LSTM."""
        _, h, c = recurrent_layer(mode, x, h, c, self.weight_ih, self.weight_hh, self.bias_ih,
                                  self.bias_hh)
        return h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"  # unquoted, as PyTorch prints it
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
        h, _ = self._run("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", x, h)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._prepare(input, hx, 2)
        h, c = self._run("LSTM", x, h, c)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx)
        h, _ = self._run("GRU", x, h)
        return h if batched else h.squeeze(0)
