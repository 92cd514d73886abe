"""`phalanx.nn.functional`: the functional form of every layer and loss (PyTorch's names)."""
from ...tensor.ops.shape import pad  # noqa: F401  (F.pad, as in PyTorch)
from .activation import (celu, celu_, cosine_similarity, elu, elu_, gelu, glu,
                         gumbel_softmax, hardshrink, hardsigmoid, hardswish, hardtanh,
                         hardtanh_, leaky_relu, leaky_relu_, log_softmax, logsigmoid, mish,
                         normalize, pairwise_distance, pdist, prelu, relu, relu6, relu_, rrelu,
                         rrelu_, selu, selu_, sigmoid, silu, softmax, softmin, softplus,
                         softshrink, softsign, tanh, tanhshrink, threshold, threshold_)
from .attention import multi_head_attention_forward, scaled_dot_product_attention
from .conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from .volume_conv import conv3d, conv_transpose3d
from .conv_tbc import conv_tbc
from .dropout import (alpha_dropout, dropout, dropout1d, dropout2d, dropout3d,
                      feature_alpha_dropout)
from .fold import fold, unfold
from .fractional_pooling import (fractional_max_pool2d, fractional_max_pool2d_with_indices,
                                 fractional_max_pool3d, fractional_max_pool3d_with_indices)
from .interpolate import interpolate, upsample, upsample_bilinear, upsample_nearest
from .linear import bilinear, linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits,
                   cosine_embedding_loss, cross_entropy, gaussian_nll_loss, hinge_embedding_loss,
                   huber_loss, kl_div, l1_loss, margin_ranking_loss, mse_loss, multi_margin_loss,
                   multilabel_soft_margin_loss, nll_loss, poisson_nll_loss, smooth_l1_loss,
                   soft_margin_loss, triplet_margin_loss)
from .sequence_losses import (ctc_loss, multilabel_margin_loss,
                              triplet_margin_with_distance_loss)
from .normalization import (batch_norm, group_norm, instance_norm, layer_norm,
                            local_response_norm, rms_norm)
from .pooling import *  # noqa: F401,F403  (max/avg/adaptive pooling, listed in its __all__)
from .pooling3d import *  # noqa: F401,F403  (their 3-D forms)
from .shuffle import channel_shuffle, native_channel_shuffle, pixel_shuffle, pixel_unshuffle
from .sparse import embedding, embedding_bag, one_hot
from .vision import affine_grid, grid_sample
