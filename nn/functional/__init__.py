"""`phalanx.nn.functional`: the functional form of every layer and loss (PyTorch's names)."""
from ...tensor.ops.shape import pad  # noqa: F401  (F.pad, as in PyTorch)
from .activation import (cosine_similarity, elu, gelu, hardsigmoid, hardswish, hardtanh,
                         leaky_relu, log_softmax, logsigmoid, mish, normalize,
                         pairwise_distance, relu, relu6, sigmoid, silu, softmax, softmin,
                         softplus, softsign, tanh)
from .attention import multi_head_attention_forward, scaled_dot_product_attention
from .conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from .dropout import dropout, dropout1d, dropout2d, dropout3d
from .interpolate import interpolate, upsample
from .linear import bilinear, linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits,
                   cosine_embedding_loss, cross_entropy, huber_loss, kl_div, l1_loss, mse_loss,
                   nll_loss, smooth_l1_loss)
from .normalization import batch_norm, group_norm, layer_norm
from .pooling import *  # noqa: F401,F403  (max/avg/adaptive pooling, listed in its __all__)
from .sparse import embedding, one_hot
