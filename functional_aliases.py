"""PyTorch's top-level forms of the functional ops: `torch.conv2d`, `torch.max_pool2d`,
`torch.batch_norm`, `torch.dropout`, `torch.kl_div`, `torch.lstm_cell`, ...

They are the ATen signatures, which differ from `nn.functional`'s in places, so each is written
out here rather than re-exported:
- losses take `reduction` as an int (0 'none', 1 'mean', 2 'sum'; left out, no reduction, as
  PyTorch's binding does) and no size_average/reduce;
- dropout takes `(input, p, train)` with `train` required; `torch.embedding` is
  `(weight, indices, padding_idx=-1, ...)` with -1 meaning none;
- pooling has no `return_indices` (`max_pool1d_with_indices` and `adaptive_max_pool1d`
  return the pair), and `stride=()` (empty) means the kernel size;
- norms take their statistics positionally and a `cudnn_enabled` flag that only picks a GPU
  kernel (it does not change the result, and is accepted for that reason).

Each one composes `nn.functional`, so forward, gradients and errors are those of the layer.
The package's `__getattr__` loads this module on first use of one of its names.
"""
import numbers

from .nn import functional as F
from .nn.functional.dropout import _feature_dropout as _channel_dropout
from .nn.functional.sparse import _renorm_
from .nn.utils.weight_norm import norm_except_dim as _norm_except_dim
from .tensor import linalg

__all__ = [
    "adaptive_avg_pool1d", "adaptive_max_pool1d", "affine_grid_generator", "alpha_dropout",
    "alpha_dropout_", "avg_pool1d", "batch_norm", "bilinear",
    "binary_cross_entropy_with_logits", "celu", "celu_", "channel_shuffle", "constant_pad_nd",
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolution",
    "cosine_embedding_loss", "cosine_similarity", "ctc_loss", "dropout", "dropout_", "embedding",
    "embedding_renorm_", "feature_alpha_dropout", "feature_alpha_dropout_", "feature_dropout",
    "feature_dropout_", "frobenius_norm", "grid_sampler", "group_norm", "gru_cell",
    "hardshrink", "hinge_embedding_loss", "instance_norm", "kl_div", "layer_norm",
    "lstm_cell", "margin_ranking_loss", "max_pool1d", "max_pool1d_with_indices", "max_pool2d",
    "max_pool3d",
    "native_channel_shuffle", "norm_except_dim", "nuclear_norm", "pairwise_distance", "pdist",
    "pixel_shuffle", "pixel_unshuffle", "poisson_nll_loss", "prelu", "rms_norm",
    "rnn_relu_cell", "rnn_tanh_cell", "rrelu", "rrelu_", "selu", "selu_", "threshold",
    "threshold_", "triplet_margin_loss"]

# ---- convolution ----------------------------------------------------------------------------
conv1d = F.conv1d
conv2d = F.conv2d
conv_transpose1d = F.conv_transpose1d
conv_transpose2d = F.conv_transpose2d
conv3d = F.conv3d
conv_transpose3d = F.conv_transpose3d
_CONVS = {1: (conv1d, conv_transpose1d), 2: (conv2d, conv_transpose2d),
          3: (conv3d, conv_transpose3d)}


def convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                groups):
    """The convolution every conv layer reduces to; the weight's rank picks 1-, 2- or 3-D."""
    spatial = weight.ndim - 2
    if spatial not in _CONVS:
        raise RuntimeError(f"convolution: expected a 3-, 4- or 5-D weight, got shape "
                           f"{list(weight.shape)}")
    conv, conv_transpose = _CONVS[spatial]
    if transposed:
        return conv_transpose(input, weight, bias, stride, padding, output_padding, groups,
                              dilation)
    if any(int(p) for p in _as_list(output_padding)):
        raise ValueError(f"convolution: output_padding {list(_as_list(output_padding))} "
                         f"is only meaningful for a transposed convolution")
    return conv(input, weight, bias, stride, padding, dilation, groups)


conv_tbc = F.conv_tbc


def _as_list(v):
    return list(v) if isinstance(v, (tuple, list)) else [v]


# ---- pooling ----------------------------------------------------------------------------------
def _stride(stride):
    """ATen's `stride=[]` (the default) means 'the kernel size', as nn.functional's None does."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return None
    return stride


def max_pool1d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return F.max_pool1d(input, kernel_size, _stride(stride), padding, dilation, ceil_mode)


def max_pool1d_with_indices(input, kernel_size, stride=(), padding=0, dilation=1,
                            ceil_mode=False):
    return F.max_pool1d(input, kernel_size, _stride(stride), padding, dilation, ceil_mode,
                        return_indices=True)


def max_pool2d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return F.max_pool2d(input, kernel_size, _stride(stride), padding, dilation, ceil_mode)


def max_pool3d(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return F.max_pool3d(input, kernel_size, _stride(stride), padding, dilation, ceil_mode)


def avg_pool1d(input, kernel_size, stride=(), padding=0, ceil_mode=False,
               count_include_pad=True):
    return F.avg_pool1d(input, kernel_size, _stride(stride), padding, ceil_mode,
                        count_include_pad)


def adaptive_avg_pool1d(input, output_size):
    return F.adaptive_avg_pool1d(input, output_size)


def adaptive_max_pool1d(input, output_size):
    """(values, indices), always: the ATen form has no `return_indices` switch."""
    return F.adaptive_max_pool1d(input, output_size, return_indices=True)


# ---- normalization ------------------------------------------------------------------------
def batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
               cudnn_enabled):
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def instance_norm(input, weight, bias, running_mean, running_var, use_input_stats, momentum,
                  eps, cudnn_enabled):
    return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                           momentum, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return F.layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return F.group_norm(input, num_groups, weight, bias, eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    return F.rms_norm(input, normalized_shape, weight, eps)


norm_except_dim = _norm_except_dim


def frobenius_norm(input, dim, keepdim=False):
    return input.square().sum(dim=tuple(_as_list(dim)), keepdim=keepdim).sqrt()


def nuclear_norm(input, dim=None, keepdim=False):
    """torch.nuclear_norm(input, keepdim=False) or (input, dim, keepdim=False)."""
    if isinstance(dim, bool):   # the (input, keepdim) overload called positionally
        dim, keepdim = None, dim
    return linalg.matrix_norm(input, "nuc", (-2, -1) if dim is None else tuple(dim), keepdim)


# ---- dropout -------------------------------------------------------------------------------
def dropout(input, p, train):
    return F.dropout(input, p, train)


def dropout_(input, p, train):
    return F.dropout(input, p, train, inplace=True)


def alpha_dropout(input, p, train):
    return F.alpha_dropout(input, p, train)


def alpha_dropout_(input, p, train):
    return F.alpha_dropout(input, p, train, inplace=True)


def feature_dropout(input, p, train):
    """Dropout of whole channels (dim 1) of an (N, C, ...) input, of any rank >= 2."""
    return _feature_dropout(input, p, train, inplace=False)


def feature_dropout_(input, p, train):
    return _feature_dropout(input, p, train, inplace=True)


def _feature_dropout(input, p, train, inplace):
    return _channel_dropout(input, p, train, inplace, None, batched=True)


def feature_alpha_dropout(input, p, train):
    return F.feature_alpha_dropout(input, p, train)


def feature_alpha_dropout_(input, p, train):
    return F.feature_alpha_dropout(input, p, train, inplace=True)


# ---- embedding -----------------------------------------------------------------------------
def embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """Note the order (weight first) and that ATen's padding_idx=-1 means 'none'."""
    return F.embedding(indices, weight, None if padding_idx == -1 else padding_idx,
                       scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


def embedding_renorm_(input, indices, max_norm, norm_type):
    """Rescale, in place and outside autograd, the rows `indices` picks whose `norm_type`-norm
    exceeds `max_norm` (what `embedding(max_norm=...)` does before the lookup)."""
    _renorm_(input, indices, max_norm, norm_type)
    return input


# ---- activations and distances ------------------------------------------------------------
celu = F.celu
celu_ = F.celu_
selu = F.selu
selu_ = F.selu_
prelu = F.prelu
hardshrink = F.hardshrink
cosine_similarity = F.cosine_similarity
pairwise_distance = F.pairwise_distance
pdist = F.pdist
pixel_shuffle = F.pixel_shuffle
pixel_unshuffle = F.pixel_unshuffle
channel_shuffle = F.channel_shuffle
native_channel_shuffle = F.native_channel_shuffle
bilinear = F.bilinear


def threshold(input, threshold, value):
    return F.threshold(input, threshold, value)


def threshold_(input, threshold, value):
    return F.threshold(input, threshold, value, inplace=True)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    _no_generator("rrelu", generator)
    return F.rrelu(input, lower, upper, training)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    _no_generator("rrelu_", generator)
    return F.rrelu(input, lower, upper, training, inplace=True)


def _no_generator(name, generator):
    if generator is not None:
        raise NotImplementedError(f"{name}: generator= is not supported; seed the default "
                                  f"generator with phalanx.manual_seed instead")


def constant_pad_nd(input, pad, value=0):
    return F.pad(input, tuple(pad), mode="constant", value=value)


# ---- vision -------------------------------------------------------------------------------
def affine_grid_generator(theta, size, align_corners):
    return F.affine_grid(theta, list(size), align_corners=align_corners)


_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDINGS = {0: "zeros", 1: "border", 2: "reflection"}


def grid_sampler(input, grid, interpolation_mode, padding_mode, align_corners):
    """ATen's grid_sample: the modes as ints (0 bilinear, 1 nearest, 2 bicubic; padding 0
    zeros, 1 border, 2 reflection)."""
    if interpolation_mode not in _GRID_MODES or padding_mode not in _GRID_PADDINGS:
        raise ValueError(f"grid_sampler: interpolation_mode must be one of {_GRID_MODES} and "
                         f"padding_mode one of {_GRID_PADDINGS}, got {interpolation_mode!r} "
                         f"and {padding_mode!r}")
    return F.grid_sample(input, grid, _GRID_MODES[interpolation_mode],
                         _GRID_PADDINGS[padding_mode], align_corners)


# ---- losses: reduction is ATen's int ------------------------------------------------------
# The defaults are 0 (no reduction): ATen's schemas say Reduction::Mean, but PyTorch's Python
# binding of these top-level forms returns the unreduced loss when `reduction` is left out.
_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


def _reduction_name(name, reduction):
    if isinstance(reduction, bool) or not isinstance(reduction, numbers.Integral) or \
            int(reduction) not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be an int, 0 (none), 1 (mean) or 2 (sum), "
                         f"got {reduction!r}; nn.functional.{name} takes the string form")
    return _REDUCTIONS[int(reduction)]


def _reduce(name, loss, reduction):
    kind = _reduction_name(name, reduction)
    return loss if kind == "none" else loss.mean() if kind == "mean" else loss.sum()


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, reduction=0):
    loss = F.binary_cross_entropy_with_logits(input, target, weight, reduction="none",
                                              pos_weight=pos_weight)
    return _reduce("binary_cross_entropy_with_logits", loss, reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction=0):
    loss = F.cosine_embedding_loss(input1, input2, target, margin, reduction="none")
    return _reduce("cosine_embedding_loss", loss, reduction)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction=0,
             zero_infinity=False):
    """reduction=1 divides each loss by its target length before the batch mean."""
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank,
                      _reduction_name("ctc_loss", reduction), zero_infinity)


def hinge_embedding_loss(input, target, margin=1.0, reduction=0):
    loss = F.hinge_embedding_loss(input, target, margin, reduction="none")
    return _reduce("hinge_embedding_loss", loss, reduction)


def kl_div(input, target, reduction=0, *, log_target=False):
    """reduction=1 is the mean over all elements (nn.functional's 'mean', not 'batchmean').
    """
    loss = F.kl_div(input, target, reduction="none", log_target=log_target)
    return _reduce("kl_div", loss, reduction)


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction=0):
    loss = F.margin_ranking_loss(input1, input2, target, margin, reduction="none")
    return _reduce("margin_ranking_loss", loss, reduction)


def poisson_nll_loss(input, target, log_input, full, eps, reduction):
    loss = F.poisson_nll_loss(input, target, log_input, full, eps=eps, reduction="none")
    return _reduce("poisson_nll_loss", loss, reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False,
                        reduction=0):
    loss = F.triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap,
                                 reduction="none")
    return _reduce("triplet_margin_loss", loss, reduction)


# ---- recurrent cells: one step, the gates in PyTorch's order ------------------------------
def _gates(input, hx, w_ih, w_hh, b_ih, b_hh):
    return F.linear(input, w_ih, b_ih) + F.linear(hx, w_hh, b_hh)


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _gates(input, hx, w_ih, w_hh, b_ih, b_hh).tanh()


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _gates(input, hx, w_ih, w_hh, b_ih, b_hh).relu()


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """hx = (h, c) -> (h', c'); gates i, f, g, o."""
    if len(hx) != 2:
        raise RuntimeError(f"lstm_cell: hx must be a pair (h, c), got {len(hx)} tensors")
    h, c = hx
    i, f, g, o = _gates(input, h, w_ih, w_hh, b_ih, b_hh).chunk(4, 1)
    c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c_next.tanh(), c_next


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """Gates r, z, n; the reset gate scales the hidden part of n, bias included."""
    ir, iz, in_ = F.linear(input, w_ih, b_ih).chunk(3, 1)
    hr, hz, hn = F.linear(hx, w_hh, b_hh).chunk(3, 1)
    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
    n = (in_ + r * hn).tanh()
    return (1 - z) * n + z * hx

