"""The ops of mathfuncs, sorting, products, placement and px.linalg against PyTorch CPU:
forward values (and integer outputs such as indices) and gradients of a random projection of
every floating output, in float64.

A case is `f(lib, *inputs)` written once: `lib` is the `phalanx` or the `torch` module.
"""
import numpy as np
import pytest
import torch

import phalanx as px


def _sample(rng, shape, domain):
    if domain == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "unit":
        return rng.uniform(-0.9, 0.9, shape)
    if domain == "gt1":
        return rng.uniform(1.2, 3.0, shape)
    if domain == "int":
        return rng.integers(0, 6, shape).astype(np.int64)
    if domain == "spd" and len(shape) > 1 and shape[-1] == shape[-2]:  # symmetric positive definite
        a = rng.normal(size=shape)
        return a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])
    if domain == "spd":
        return rng.normal(size=shape)
    if domain == "ties":
        return rng.integers(0, 3, shape).astype(np.float64)
    return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


# name, f(lib, *inputs), input shapes, domain, differentiable
CASES = [
    ("asin", lambda m, x: m.asin(x), [(3, 4)], "unit", True),
    ("acos", lambda m, x: m.acos(x), [(3, 4)], "unit", True),
    ("atan", lambda m, x: m.atan(x), [(3, 4)], "any", True),
    ("sinh", lambda m, x: m.sinh(x), [(3, 4)], "any", True),
    ("cosh", lambda m, x: m.cosh(x), [(3, 4)], "any", True),
    ("asinh", lambda m, x: m.asinh(x), [(3, 4)], "any", True),
    ("acosh", lambda m, x: m.acosh(x), [(3, 4)], "gt1", True),
    ("atanh", lambda m, x: m.atanh(x), [(3, 4)], "unit", True),
    ("erfc", lambda m, x: m.erfc(x), [(3, 4)], "any", True),
    ("erfinv", lambda m, x: m.erfinv(x), [(3, 4)], "unit", True),
    ("lgamma", lambda m, x: m.lgamma(x), [(3, 4)], "pos", True),
    ("digamma", lambda m, x: m.digamma(x), [(3, 4)], "pos", True),
    ("polygamma", lambda m, x: m.polygamma(2, x), [(3, 4)], "pos", True),
    ("i0", lambda m, x: m.i0(x), [(3, 4)], "any", True),
    ("exp2", lambda m, x: m.exp2(x), [(3, 4)], "any", True),
    ("deg2rad", lambda m, x: m.deg2rad(x) + m.rad2deg(x), [(5,)], "any", True),
    ("frac", lambda m, x: m.frac(x * 3), [(5,)], "any", True),
    ("sinc", lambda m, x: m.sinc(x), [(6,)], "any", True),
    ("logit", lambda m, x: m.logit(x * 0.4 + 0.5, eps=0.2), [(6,)], "unit", True),
    ("nan_to_num", lambda m, x: m.nan_to_num(m.log(x), posinf=5.0), [(6,)], "any", True),
    ("clamp_min_max", lambda m, x: m.clamp_min(x, -0.5) + m.clamp_max(x, 0.5), [(6,)], "any",
     True),
    ("atan2", lambda m, y, x: m.atan2(y, x), [(3, 4), (4,)], "any", True),
    ("hypot", lambda m, y, x: m.hypot(y, x), [(3, 4), (3, 4)], "any", True),
    ("copysign", lambda m, a, b: m.copysign(a, b), [(3, 4), (3, 4)], "any", True),
    ("logaddexp", lambda m, a, b: m.logaddexp(a * 30, b), [(3, 4), (4,)], "any", True),
    ("logaddexp2", lambda m, a, b: m.logaddexp2(a, b), [(3, 4), (3, 4)], "any", True),
    ("xlogy", lambda m, a, b: m.xlogy(a, b), [(3, 4), (3, 4)], "pos", True),
    ("fmax_fmin", lambda m, a, b: m.fmax(a, b) + m.fmin(a, b) * 2, [(3, 4), (3, 4)], "any",
     True),
    ("float_power", lambda m, a: m.float_power(a, 2.5), [(4,)], "pos", True),
    ("ldexp", lambda m, a: m.ldexp(a, m.tensor([1, 2, 3, 0])), [(4,)], "any", True),
    ("angle", lambda m, x: m.angle(x) + x, [(6,)], "any", True),
    ("misc_unary", lambda m, x: (m.positive(x), m.rsub(x, 2.0), m.isreal(x), m.frexp(x),
                                 m.fix(x * 3), m.sgn(x), m.signbit(x)), [(6,)], "any", True),
    ("shifts", lambda m, x: (m.bitwise_left_shift(x, 2), m.bitwise_right_shift(x, 1),
                             x.bitwise_and(3), x.bitwise_or(4), x.bitwise_xor(5),
                             x.bitwise_not()), [(6,)], "int", False),
    ("mvlgamma", lambda m, x: m.mvlgamma(x + 1, 3), [(5,)], "pos", True),
    # as in PyTorch, only the second argument has a gradient
    ("igamma", lambda m, a, x: m.igamma(a.detach(), x) + m.igammac(a.detach() + 1, x * 2),
     [(5,), (5,)], "pos", True),
    ("triangular_solve", lambda m, b, a: m.triangular_solve(b, a, upper=False,
                                                            transpose=True).solution,
     [(3, 2), (3, 3)], "spd", True),
    ("sort", lambda m, x: m.sort(x, dim=0, descending=True), [(5, 3)], "ties", True),
    ("sort_asc", lambda m, x: m.sort(x), [(3, 6)], "any", True),
    ("argsort", lambda m, x: m.argsort(x, dim=1), [(3, 6)], "any", False),
    ("msort", lambda m, x: m.msort(x), [(4, 3)], "any", True),
    ("topk", lambda m, x: m.topk(x, 2, dim=1), [(3, 6)], "any", True),
    ("topk_small", lambda m, x: m.topk(x, 3, largest=False), [(7,)], "any", True),
    # k under a quarter of the dim: a partition, then a sort of the k
    ("topk_partitioned", lambda m, x: m.topk(x, 3, dim=0), [(20, 4)], "any", True),
    ("topk_partitioned_smallest", lambda m, x: m.topk(x, 2, largest=False), [(3, 17)], "any",
     True),
    ("topk_nan_largest", lambda m, x: m.topk(x * m.where(m.arange(30) == 7, float("nan"),
                                                         1.0), 3), [(2, 30)], "any", True),
    ("kthvalue", lambda m, x: m.kthvalue(x, 2, 1, keepdim=True), [(3, 5)], "any", True),
    ("median", lambda m, x: m.median(x), [(3, 5)], "any", True),
    ("median_dim", lambda m, x: m.median(x, 1), [(3, 6)], "any", True),
    ("nanmedian", lambda m, x: m.nanmedian(m.where(x > 1.5, float("nan"), x), 1),
     [(3, 6)], "any", False),
    ("mode", lambda m, x: m.mode(x, 1), [(4, 7)], "ties", True),
    ("quantile", lambda m, x: m.quantile(x, 0.3, dim=1, keepdim=True), [(3, 6)], "any", True),
    ("quantile_q", lambda m, x: m.quantile(x, m.tensor([0.1, 0.5, 0.9], dtype=m.float64)),
     [(7,)], "any", True),
    ("quantile_nearest", lambda m, x: m.quantile(x, 0.4, dim=0, interpolation="nearest"),
     [(6, 2)], "any", True),
    ("nanquantile", lambda m, x: m.nanquantile(m.where(x > 1.2, float("nan"), x), 0.5, dim=1),
     [(3, 6)], "any", False),
    ("cummax", lambda m, x: m.cummax(x, 1), [(3, 6)], "ties", True),
    ("cummin", lambda m, x: m.cummin(x, 0), [(5, 3)], "any", True),
    # after a NaN the value stays NaN and the index follows the latest NaN
    ("cummax_nan", lambda m, x: m.cummax(x * m.where(m.arange(9) % 4 == 1, float("nan"), 1.0),
                                         1), [(3, 9)], "any", False),
    ("cummin_nan", lambda m, x: m.cummin(x * m.where(m.arange(9) % 3 == 2, float("nan"), 1.0),
                                         1), [(3, 9)], "any", False),
    ("cumprod_long", lambda m, x: m.cumprod(x, 0), [(40, 2)], "any", True),
    ("cumprod", lambda m, x: m.cumprod(x, 1), [(3, 5)], "any", True),
    ("cumprod_zero", lambda m, x: m.cumprod(m.where(x > 1, 0.0, x), 0), [(6,)], "any", True),
    ("logcumsumexp", lambda m, x: m.logcumsumexp(x * 10, 1), [(3, 5)], "any", True),
    ("nansum_nanmean", lambda m, x: m.nansum(m.where(x > 1, float("nan"), x), 1) +
     m.nanmean(m.where(x > 1, float("nan"), x), 1), [(3, 6)], "any", True),
    ("aminmax", lambda m, x: m.aminmax(x, dim=0), [(4, 3)], "any", True),
    ("diff", lambda m, x: m.diff(x, n=2, dim=1), [(3, 6)], "any", True),
    ("diff_prepend", lambda m, x, p: m.diff(x, dim=0, prepend=p), [(4, 3), (1, 3)], "any",
     True),
    ("addmm", lambda m, i, a, b: m.addmm(i, a, b, beta=0.5, alpha=2), [(3,), (2, 4), (4, 3)],
     "any", True),
    ("addmv", lambda m, i, a, v: m.addmv(i, a, v, alpha=3), [(2,), (2, 4), (4,)], "any", True),
    ("baddbmm", lambda m, i, a, b: m.baddbmm(i, a, b), [(2, 3, 3), (2, 3, 4), (2, 4, 3)],
     "any", True),
    ("addbmm", lambda m, i, a, b: m.addbmm(i, a, b, beta=2), [(3, 3), (2, 3, 4), (2, 4, 3)],
     "any", True),
    ("addr", lambda m, i, a, b: m.addr(i, a, b), [(3, 2), (3,), (2,)], "any", True),
    ("mv_inner_vdot", lambda m, a, v: m.mv(a, v).sum() + m.inner(v, v) + m.vdot(v, v),
     [(3, 4), (4,)], "any", True),
    ("inner_nd", lambda m, a, b: m.inner(a, b), [(2, 3, 4), (5, 4)], "any", True),
    ("kron", lambda m, a, b: m.kron(a, b), [(2, 3), (3, 2)], "any", True),
    ("kron_mixed", lambda m, a, b: m.kron(a, b), [(2,), (2, 3, 2)], "any", True),
    ("tensordot", lambda m, a, b: m.tensordot(a, b, dims=([1, 0], [0, 2])),
     [(3, 4, 5), (4, 2, 3)], "any", True),
    ("tensordot_int", lambda m, a, b: m.tensordot(a, b, 1), [(3, 4), (4, 2)], "any", True),
    ("trace_diag", lambda m, a: m.trace(a) + m.diag(a, 1).sum() + m.diag(m.diag(a), -1).sum(),
     [(4, 4)], "any", True),
    ("diagonal", lambda m, a: m.diagonal(a, -1, 0, 2), [(4, 2, 3)], "any", True),
    ("diag_embed", lambda m, a: m.diag_embed(a, 1, 0, 2), [(2, 3)], "any", True),
    ("diagflat", lambda m, a: m.diagflat(a, -1), [(2, 2)], "any", True),
    ("block_diag", lambda m, a, b, c: m.block_diag(a, b, c), [(2, 3), (1, 1), (3,)], "any",
     True),
    ("cartesian_prod", lambda m, a, b: m.cartesian_prod(a, b), [(3,), (2,)], "any", True),
    ("combinations", lambda m, a: m.combinations(a, 2) * 1, [(4,)], "any", True),
    ("combinations_rep", lambda m, a: m.combinations(a, 3, with_replacement=True), [(3,)],
     "any", True),
    ("meshgrid_xy", lambda m, a, b: m.meshgrid(a, b, indexing="xy"), [(3,), (2,)], "any",
     True),
    ("meshgrid_ij", lambda m, a, b, c: m.meshgrid(a, b, c, indexing="ij"), [(3,), (2,), (2,)],
     "any", True),
    ("cdist", lambda m, a, b: m.cdist(a, b), [(2, 4, 3), (2, 5, 3)], "any", True),
    ("cdist_p1", lambda m, a, b: m.cdist(a, b, p=1), [(4, 3), (5, 3)], "any", True),
    # PyTorch's matrix-product form: past 25 rows, or asked for; batches broadcast
    ("cdist_mm", lambda m, a, b: m.cdist(a, b), [(2, 30, 3), (1, 5, 3)], "any", True),
    ("cdist_mm_asked", lambda m, a, b: m.cdist(a, b, compute_mode="use_mm_for_euclid_dist"),
     [(4, 3), (5, 3)], "any", True),
    ("dist", lambda m, a, b: m.dist(a, b, 3), [(4, 3), (4, 3)], "any", True),
    ("cross", lambda m, a, b: m.cross(a, b, dim=1), [(4, 3), (4, 3)], "any", True),
    ("cov_corrcoef", lambda m, a: m.cov(a).sum() + m.corrcoef(a).sum(), [(3, 6)], "any", True),
    ("matrix_power", lambda m, a: m.matrix_power(a, 3), [(3, 3)], "any", True),
    ("index_add", lambda m, x, s: m.index_add(x, 1, m.tensor([0, 2, 0]), s, alpha=2),
     [(3, 4), (3, 3)], "any", True),
    ("index_copy", lambda m, x, s: m.index_copy(x, 0, m.tensor([2, 0]), s), [(3, 4), (2, 4)],
     "any", True),
    ("index_fill", lambda m, x: m.index_fill(x, 1, m.tensor([1, 3]), -2.0), [(3, 4)], "any",
     True),
    ("masked_scatter", lambda m, x, s: m.masked_scatter(x, x > 0, s), [(3, 4), (14,)], "any",
     True),
    ("take", lambda m, x: m.take(x, m.tensor([[0, 5], [11, 5]])), [(3, 4)], "any", True),
    ("put", lambda m, x, s: x.clone().put_(m.tensor([1, 7, 1]), s, accumulate=True),
     [(3, 4), (3,)], "any", True),
    ("index_put", lambda m, x, v: m.index_put(x, (m.tensor([0, 2]), m.tensor([1, 1])), v),
     [(3, 4), (2,)], "any", True),
    ("index_put_acc", lambda m, x, v: x.index_put((m.tensor([0, 0]),), v, accumulate=True),
     [(3, 4), (4,)], "any", True),
    ("select_scatter", lambda m, x, s: m.select_scatter(x, s, 1, 2), [(3, 4), (3,)], "any",
     True),
    ("slice_scatter", lambda m, x, s: m.slice_scatter(x, s, 1, 0, 4, 2), [(3, 4), (3, 2)],
     "any", True),
    ("rot90", lambda m, x: m.rot90(x, 1, [0, 1]) + m.rot90(x, -1, [0, 1]).flip(0), [(3, 3)],
     "any", True),
    ("rot90_k3", lambda m, x: m.rot90(x, 3, [1, 2]), [(2, 3, 4)], "any", True),
    ("fliplr_flipud", lambda m, x: m.fliplr(x) + m.flipud(x), [(3, 3)], "any", True),
    ("tensor_split", lambda m, x: m.tensor_split(x, 3, dim=1), [(2, 7)], "any", True),
    ("tensor_split_idx", lambda m, x: m.tensor_split(x, [1, 4]), [(6, 2)], "any", True),
    ("hsplit_vsplit", lambda m, x: m.hsplit(x, 2) + m.vsplit(x, [1]), [(4, 4)], "any", True),
    ("column_dstack", lambda m, a, b: (m.column_stack([a, b]), m.dstack([a, b])), [(3,), (3,)],
     "any", True),
    ("atleast", lambda m, a: m.atleast_3d(a).sum() + m.atleast_2d(a).sum(), [(3,)], "any",
     True),
    ("vander", lambda m, a: m.vander(a, 4), [(3,)], "any", False),  # torch's backward fails
    ("trapezoid", lambda m, y, x: m.trapezoid(y, x) + m.trapezoid(y, dx=0.5),
     [(3, 5), (5,)], "any", True),
    ("cumulative_trapezoid", lambda m, y: m.cumulative_trapezoid(y, dim=0), [(4, 2)], "any",
     True),
    ("searchsorted", lambda m, s, v: m.searchsorted(m.sort(s).values, v, right=True),
     [(6,), (2, 3)], "any", False),
    ("searchsorted_nd", lambda m, s, v: m.searchsorted(m.sort(s).values, v), [(2, 6), (2, 3)],
     "any", False),
    ("bucketize", lambda m, v: m.bucketize(v, m.tensor([-1.0, 0.0, 1.0], dtype=m.float64)),
     [(3, 4)], "any", False),
    ("unique", lambda m, x: m.unique(x, return_inverse=True, return_counts=True), [(3, 5)],
     "int", False),
    ("unique_dim", lambda m, x: m.unique(x, dim=0, return_inverse=True), [(6, 2)], "ties",
     False),
    ("unique_consecutive", lambda m, x: m.unique_consecutive(x.reshape(-1),
                                                             return_counts=True,
                                                             return_inverse=True),
     [(3, 5)], "ties", False),
    ("bincount", lambda m, x: m.bincount(x.reshape(-1), minlength=8), [(3, 5)], "int", False),
    ("histc", lambda m, x: m.histc(x, 5, -2, 2), [(20,)], "any", False),
    ("isin", lambda m, x: m.isin(x, m.tensor([1, 3])), [(3, 4)], "int", False),
    ("heaviside_gcd", lambda m, x: (m.heaviside(x - 2, x), m.gcd(x, m.tensor(4)),
                                    m.lcm(x + 1, m.tensor(4))), [(6,)], "int", False),
    ("inv", lambda m, a: m.linalg.inv(a), [(2, 3, 3)], "spd", True),
    ("det", lambda m, a: m.linalg.det(a) + m.det(a * 0.5), [(2, 3, 3)], "any", True),
    ("slogdet", lambda m, a: m.linalg.slogdet(a), [(3, 3)], "any", True),
    ("logdet", lambda m, a: m.logdet(a), [(3, 3)], "spd", True),
    ("solve", lambda m, a, b: m.linalg.solve(a, b), [(2, 3, 3), (3, 2)], "spd", True),
    ("solve_vec", lambda m, a, b: m.linalg.solve(a, b), [(3, 3), (3,)], "spd", True),
    ("cholesky", lambda m, a: m.linalg.cholesky(a), [(2, 3, 3)], "spd", True),
    ("eigh", lambda m, a: m.linalg.eigh(a)[0], [(3, 3)], "spd", True),
    ("eigh_vectors", lambda m, a: m.linalg.eigh(a)[1].abs(), [(3, 3)], "spd", True),
    ("svdvals", lambda m, a: m.linalg.svdvals(a), [(4, 3)], "any", True),
    ("svd_uv", lambda m, a: [t.abs() for t in m.linalg.svd(a, full_matrices=False)],
     [(4, 3)], "any", True),
    ("svd_wide", lambda m, a: m.linalg.svd(a, full_matrices=False)[0].abs(), [(2, 4)], "any",
     True),
    ("qr", lambda m, a: m.linalg.qr(a), [(4, 3)], "any", True),
    # linalg.svd's default full_matrices=True on non-square inputs (|U|, |Vh|: sign-free)
    ("svd_full_wide", lambda m, a: (m.linalg.svd(a).U.abs(), m.linalg.svd(a).S,
                                    m.linalg.svd(a).Vh[:3].abs()), [(3, 5)], "any", True),
    ("svd_full_tall", lambda m, a: (m.linalg.svd(a).U[:, :2].abs(), m.linalg.svd(a).S),
     [(4, 2)], "any", True),
    # wide matrices (A = [X Y]: the square formula on X, gY = Q gV) and the other modes
    ("qr_wide", lambda m, a: m.linalg.qr(a), [(2, 3, 5)], "any", True),
    ("qr_complete", lambda m, a: m.linalg.qr(a, mode="complete"), [(3, 5)], "any", True),
    ("qr_complete_tall", lambda m, a: m.linalg.qr(a, mode="complete"), [(5, 3)], "any",
     False),
    ("qr_r", lambda m, a: m.linalg.qr(a, mode="r")[1], [(5, 3)], "any", False),
    ("qr_legacy_some_false", lambda m, a: m.qr(a, some=False), [(3, 5)], "any", True),
    ("pinv", lambda m, a: m.linalg.pinv(a), [(4, 3)], "any", True),
    ("unfold", lambda m, x: x.unfold(1, 3, 2), [(2, 8)], "any", True),
    ("unfold_dim0", lambda m, x: x.unfold(0, 2, 1), [(4, 3)], "any", True),
    ("sum_to_size", lambda m, x: x.sum_to_size(1, 4), [(3, 4)], "any", True),
    ("diagonal_scatter", lambda m, x, s: m.diagonal_scatter(x, s, 1), [(3, 4), (3,)], "any",
     True),
    ("fill_diagonal", lambda m, x: (x * 1).fill_diagonal_(2.0, wrap=True), [(7, 3)], "any",
     True),
    ("renorm", lambda m, x: m.renorm(x, 2, 0, 1.5), [(4, 3)], "any", True),
    ("matrix_exp", lambda m, a: m.matrix_exp(a * 0.5), [(2, 3, 3)], "any", True),
    ("cholesky_solve", lambda m, b, a: m.cholesky_solve(b, m.linalg.cholesky(a)),
     [(3, 2), (3, 3)], "spd", True),
    ("cholesky_inverse", lambda m, a: m.cholesky_inverse(m.linalg.cholesky(a), upper=False),
     [(3, 3)], "spd", True),
    ("solve_triangular", lambda m, a, b: m.linalg.solve_triangular(a, b, upper=True),
     [(3, 3), (3, 2)], "spd", True),
    ("lstsq", lambda m, a, b: m.linalg.lstsq(a, b).solution, [(5, 3), (5, 2)], "any", True),
    ("multi_dot", lambda m, a, b, c: m.linalg.multi_dot([a, b, c]), [(3,), (3, 4), (4,)],
     "any", True),
    ("cond", lambda m, a: m.linalg.cond(a), [(3, 3)], "spd", True),
    ("vecdot", lambda m, a, b: m.linalg.vecdot(a, b), [(3, 4), (3, 4)], "any", True),
    ("norms", lambda m, a: (m.linalg.norm(a), m.linalg.matrix_norm(a, "nuc"),
                            m.linalg.matrix_norm(a, 1), m.linalg.matrix_norm(a, float("inf")),
                            m.linalg.vector_norm(a, 3, dim=0), m.linalg.norm(a, 2)),
     [(4, 3)], "any", True),
]


def _to_numpy(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.detach().numpy()


def _flatten(out):
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _flatten(x)]
    return [out]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_against_torch(case):
    name, f, shapes, domain, differentiable = case
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    data = [_sample(rng, s, domain) for s in shapes]
    grad = differentiable and domain not in ("int",)
    tx = [torch.tensor(d, requires_grad=grad) for d in data]
    px_in = [px.tensor(d, requires_grad=grad) for d in data]
    t_out, p_out = _flatten(f(torch, *tx)), _flatten(f(px, *px_in))
    assert len(t_out) == len(p_out)
    for t, p in zip(t_out, p_out):
        assert tuple(t.shape) == tuple(p.shape), name
        assert str(t.dtype).replace("torch.", "") == str(p.dtype).replace("phalanx.", ""), name
        np.testing.assert_allclose(_to_numpy(p), _to_numpy(t), rtol=1e-6, atol=1e-9,
                                   err_msg=name)
    if not grad:
        return
    floats = [(t, p) for t, p in zip(t_out, p_out) if t.dtype.is_floating_point
              and t.requires_grad]
    t_loss = sum((t * torch.tensor(w)).sum() for (t, _), w in
                 zip(floats, [rng.normal(size=tuple(t.shape)) for t, _ in floats]))
    rng2 = np.random.default_rng(abs(hash(name)) % 2**32)
    weights = [rng2.normal(size=tuple(t.shape)) for t, _ in floats]
    t_loss = sum((t * torch.tensor(w)).sum() for (t, _), w in zip(floats, weights))
    p_loss = sum((p * px.tensor(w)).sum() for (_, p), w in zip(floats, weights))
    t_loss.backward()
    p_loss.backward()
    for t, p in zip(tx, px_in):
        tg = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        pg = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(pg, tg, rtol=1e-5, atol=1e-8, err_msg=f"{name} gradient")


@pytest.mark.parametrize("name", ["inv", "cholesky", "det", "eigh"])
def test_linalg_second_order(name):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    a = a @ a.T + 3 * np.eye(3)
    x = px.tensor(a, requires_grad=True)
    # cholesky and eigh read one triangle: check them on the symmetric part, as PyTorch does
    fn = {"inv": px.linalg.inv, "det": px.linalg.det,
          "cholesky": lambda t: px.linalg.cholesky((t + t.mT) * 0.5),
          "eigh": lambda t: px.linalg.eigh((t + t.mT) * 0.5)[0]}[name]
    assert px.autograd.gradcheck(fn, (x,))
    assert px.autograd.gradgradcheck(fn, (x,)) if hasattr(px.autograd, "gradgradcheck") \
        else True


def test_tensor_methods_and_inplace():
    x = px.tensor([[0.5, -0.2], [0.1, 0.3]])
    y = x.clone()
    y.acos_()
    np.testing.assert_allclose(y.numpy(), np.arccos(x.numpy()), rtol=1e-6)
    z = px.zeros(3, 4)
    z.index_add_(0, px.tensor([0, 0, 2]), px.ones(3, 4))
    np.testing.assert_allclose(z.sum(1).numpy(), [8.0, 0.0, 4.0])
    np.testing.assert_allclose(x.where(x > 0, px.tensor(9.0)).numpy(), [[0.5, 9.0], [0.1, 0.3]],
                               rtol=1e-6)
    m = px.arange(4.0)
    m.apply_(lambda v: v * v)
    assert m.tolist() == [0.0, 1.0, 4.0, 9.0]
    m.map_(px.tensor(1.0), lambda a, b: a + b)
    assert m.tolist() == [1.0, 2.0, 5.0, 10.0]
    b = px.tensor([1.0, 2.0])
    b.lt_(1.5)
    assert b.tolist() == [1.0, 0.0]
    assert px.randn(2, 3).ndimension() == 2 and px.tensor(1).is_signed()
    base = px.arange(6.0)
    assert base[2:].data_ptr() == base.data_ptr() + 2 * 4
    assert (base * 2).output_nr == 0
    assert px.tensor([3.0]).is_nonzero() and px.ones(2).get_device() == -1


def test_triangle_indices_and_unravel():
    for r, c, o in [(3, 4, 0), (4, 3, -1), (3, 3, 1)]:
        np.testing.assert_array_equal(px.tril_indices(r, c, o).numpy(),
                                      torch.tril_indices(r, c, o).numpy())
        np.testing.assert_array_equal(px.triu_indices(r, c, o).numpy(),
                                      torch.triu_indices(r, c, o).numpy())
    got = px.unravel_index(px.tensor([4, 7, 1]), (2, 4))
    want = torch.unravel_index(torch.tensor([4, 7, 1]), (2, 4))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.5])
    for fn in ("isposinf", "isneginf", "signbit", "sgn", "nan_to_num", "sinc", "frac"):
        np.testing.assert_array_equal(getattr(px, fn)(px.tensor(x)).numpy(),
                                      getattr(torch, fn)(torch.tensor(x)).numpy(), err_msg=fn)
    a, b = np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, -1.0, np.nan, 0.0])
    np.testing.assert_array_equal(px.xlogy(px.tensor(a), px.tensor(b)).numpy(),
                                  torch.xlogy(torch.tensor(a), torch.tensor(b)).numpy())
    np.testing.assert_array_equal(px.logaddexp(px.tensor([-np.inf]), px.tensor([-np.inf])).numpy(),
                                  [-np.inf])
    one, two = px.tensor([1.0], dtype=px.float64), px.tensor([2.0], dtype=px.float64)
    np.testing.assert_array_equal(px.nextafter(one, two).numpy(),
                                  torch.nextafter(torch.tensor([1.0], dtype=torch.float64),
                                                  torch.tensor([2.0], dtype=torch.float64)))


def test_errors_name_the_problem():
    with pytest.raises(RuntimeError, match="out of range"):
        px.topk(px.randn(3), 4)
    with pytest.raises(RuntimeError, match="singular"):
        px.linalg.inv(px.zeros(2, 2))
    with pytest.raises(RuntimeError, match="unrecognized mode 'full'"):
        px.linalg.qr(px.randn(3, 2), mode="full")


def test_integer_device_is_a_gpu_ordinal():
    assert px.device(0) == "cuda:0" and repr(px.device(1)) == "device(type='cuda', index=1)"
    with pytest.raises(RuntimeError, match="negative"):
        px.device(-1)


@pytest.mark.parametrize("mask", [True, False])
def test_zero_dim_boolean_mask_index(mask):
    data = np.arange(6.0).reshape(2, 3)
    t, p = torch.tensor(data, requires_grad=True), px.tensor(data, requires_grad=True)
    tm, pm = torch.tensor(mask), px.tensor(mask)
    for tt, pp in [(t[tm], p[pm]), (t[0, tm], p[0, pm]), (t[:, tm], p[:, pm])]:
        assert tuple(pp.shape) == tuple(tt.shape)
        np.testing.assert_array_equal(pp.detach().numpy(), tt.detach().numpy())
    (t[tm] * 2).sum().backward()
    (p[pm] * 2).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    tc, pc = t.detach().clone(), p.detach().clone()
    tc[tm] = 7.0
    pc[pm] = 7.0
    np.testing.assert_array_equal(pc.numpy(), tc.numpy())


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_against_torch(reduce, include_self):
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (3, 5)).astype(np.float64)   # ties and zeros on purpose
    src = rng.integers(-2, 3, (3, 4)).astype(np.float64)
    index = np.array([[0, 1, 0, 4], [2, 2, 2, 0], [1, 3, 3, 1]])
    weights = rng.normal(size=(3, 5))
    results = []
    for lib in (torch, px):
        xt = lib.tensor(x, requires_grad=True)
        st = lib.tensor(src, requires_grad=True)
        out = xt.scatter_reduce(1, lib.tensor(index), st, reduce, include_self=include_self)
        (out * lib.tensor(weights)).sum().backward()
        results.append([out.detach().numpy(), xt.grad.numpy(), st.grad.numpy()])
    for got, want, what in zip(results[1], results[0], ("value", "input grad", "src grad")):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=what)


def test_scatter_reduce_integer_mean_and_inplace():
    x = px.tensor([10, 20, 30])
    x.scatter_reduce_(0, px.tensor([0, 0, 2]), px.tensor([1, 2, 5]), "mean")
    want = torch.tensor([10, 20, 30]).scatter_reduce_(0, torch.tensor([0, 0, 2]),
                                                      torch.tensor([1, 2, 5]), "mean")
    assert x.tolist() == want.tolist()


def test_matrix_exp_second_order():
    rng = np.random.default_rng(2)
    a = px.tensor(rng.normal(size=(3, 3)) * 0.3, requires_grad=True)
    assert px.autograd.gradcheck(px.matrix_exp, (a,))
    assert px.autograd.gradgradcheck(px.matrix_exp, (a,))


def test_in_place_shape_ops_and_top_level_in_place_functions():
    for name, args in [("t_", ()), ("transpose_", (0, 1)), ("unsqueeze_", (1,)),
                       ("swapdims_", (1, 0))]:
        t_in, p_in = torch.randn(3, 4, requires_grad=True), None
        p_in = px.tensor(t_in.detach().numpy(), requires_grad=True)
        t_y, p_y = t_in * 2, p_in * 2
        assert getattr(t_y, name)(*args) is t_y and getattr(p_y, name)(*args) is p_y
        assert tuple(p_y.shape) == tuple(t_y.shape)
        w = np.random.default_rng(0).normal(size=tuple(t_y.shape))
        (t_y * torch.tensor(w)).sum().backward()
        (p_y * px.tensor(w)).sum().backward()
        np.testing.assert_allclose(p_in.grad.numpy(), t_in.grad.numpy(), rtol=1e-6)
    s = px.zeros(1, 3)
    s.squeeze_()
    assert tuple(s.shape) == (3,)
    with pytest.raises(RuntimeError, match="leaf"):
        px.zeros(2, 3, requires_grad=True).t_()
    x = px.tensor([-1.0, 2.0])
    assert px.relu_(x) is x and x.tolist() == [0.0, 2.0]
    px.clamp_(x, max=1.0)
    assert x.tolist() == [0.0, 1.0]
    px.fill_(x, 3.0)
    assert x.tolist() == [3.0, 3.0]
    px.zero_(x)
    assert x.tolist() == [0.0, 0.0]


def test_real_tensor_conjugation_and_predicates():
    x = px.randn(2, 3)
    assert px.conj(x) is x and x.resolve_conj() is x and x.real is x
    assert not px.is_conj(x) and not x.is_neg() and not px.is_complex(x)
    assert tuple(x.H.shape) == (3, 2) and tuple(x.mH.shape) == (3, 2)
    assert px.result_type(px.tensor([1, 2]), 1.5) == px.float32
    assert px.can_cast(px.int32, px.float64) and not px.can_cast(px.float32, px.int64)
    assert [tuple(c.shape) for c in px.unsafe_chunk(x, 2, 1)] == [(2, 2), (2, 1)]


@pytest.mark.parametrize("name", ["hann_window", "hamming_window", "blackman_window",
                                  "bartlett_window", "kaiser_window"])
def test_window_functions(name):
    for n in (0, 1, 2, 7, 8):
        for periodic in (True, False):
            got = getattr(px, name)(n, periodic, dtype=px.float64)
            want = getattr(torch, name)(n, periodic, dtype=torch.float64)
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12,
                                       err_msg=f"{name}({n}, {periodic})")
    assert getattr(px, name)(4).dtype == px.float32


def test_histogram_nonzero_static_scalar_tensor_and_threads(monkeypatch):
    import os
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after the test
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    w = rng.random(30)
    for kwargs in ({}, {"range": (-1.0, 1.0)}, {"density": True}):
        got = px.histogram(px.tensor(x), 5, weight=px.tensor(w), **kwargs)
        want = torch.histogram(torch.tensor(x), 5, weight=torch.tensor(w), **kwargs)
        np.testing.assert_allclose(got.hist.numpy(), want.hist.numpy(), rtol=1e-12)
        np.testing.assert_allclose(got.bin_edges.numpy(), want.bin_edges.numpy(), rtol=1e-12)
    edges = torch.tensor([-2.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    np.testing.assert_allclose(px.tensor(x).histogram(px.tensor(edges.numpy())).hist.numpy(),
                               torch.tensor(x).histogram(edges).hist.numpy())
    m = np.array([[1, 0, 2], [0, 0, 3]])
    for size in (2, 5):
        np.testing.assert_array_equal(px.tensor(m).nonzero_static(size=size).numpy(),
                                      torch.tensor(m).nonzero_static(size=size).numpy())
    assert px.scalar_tensor(3).dtype == px.float32 and px.scalar_tensor(3).ndim == 0
    before = px.get_num_threads()
    try:
        px.set_num_threads(1)
        assert px.get_num_threads() == 1
        from threadpoolctl import threadpool_info
        assert all(info["num_threads"] == 1 for info in threadpool_info())
    finally:
        px.set_num_threads(before)
    with pytest.raises(RuntimeError, match="positive"):
        px.set_num_threads(0)


def test_igamma_input_gradient_is_refused_as_in_pytorch():
    a = px.tensor([1.5, 2.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="first argument"):
        px.igamma(a, px.tensor([1.0, 3.0])).sum().backward()


@pytest.mark.parametrize("driver", [None, "gelsy", "gelsd", "gelss", "gels"])
@pytest.mark.parametrize("a_shape, b_shape, deficient", [
    ((6, 3), (6, 2), False), ((2, 6, 3), (2, 6), False), ((3, 5), (3, 2), False),
    ((1, 6, 3), (4, 6, 2), False), ((6, 3), (6, 2), True)])
def test_lstsq_drivers_match_pytorch(driver, a_shape, b_shape, deficient):
    """Every field as PyTorch's driver fills it (rank from gelsy/gelsd/gelss, singular values
    from gelsd/gelss, residuals for tall full-rank A except with gelsy), and the gradient of
    the solution."""
    if deficient and driver == "gels":
        pytest.skip("gels assumes full rank (LAPACK's answer is arbitrary)")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    if deficient:
        a[..., -1] = a[..., 0]
    pa, pb = px.tensor(a, requires_grad=True), px.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    mine, theirs = px.linalg.lstsq(pa, pb, driver=driver), torch.linalg.lstsq(ta, tb,
                                                                             driver=driver)
    fields = ("solution", "residuals", "rank", "singular_values")
    expected = {field: getattr(theirs, field) for field in fields}
    if deficient and driver in (None, "gelsy"):
        # PyTorch 2.13's gelsy finds rank 1 for this A in about 1 call of 100 (the same input,
        # in one process); its gelsd gives the same minimum-norm solution and rank reliably
        oracle = torch.linalg.lstsq(ta, tb, driver="gelsd")
        expected.update(solution=oracle.solution, rank=oracle.rank)
    for field in fields:
        x, y = getattr(mine, field), expected[field]
        assert tuple(x.shape) == tuple(y.shape), field
        np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), atol=1e-10,
                                   err_msg=field)
    if not deficient:
        w = rng.standard_normal(tuple(theirs.solution.shape))
        (mine.solution * px.tensor(w)).sum().backward()
        (theirs.solution * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(pa.grad.numpy(), ta.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(pb.grad.numpy(), tb.grad.numpy(), atol=1e-10)
