"""Arguments that Phalanx accepted and ignored until issue 10's systematic check
(`test_no_ignored_arguments.py`), now honoured as PyTorch honours them, or refused with
NotImplementedError where that is out of scope; each compared with PyTorch."""
import contextlib
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.autograd.functional as PF
import phalanx.distributed as dist
import torch.autograd.functional as TF
from phalanx.utils.checkpoint import checkpoint as px_checkpoint
from phalanx.utils.data import Sampler
from torch.utils.checkpoint import checkpoint as torch_checkpoint

LIBS = (torch, px)


# ---- nn.Module -----------------------------------------------------------------------------
def _assigned(lib, assign):
    """What load_state_dict(assign=...) leaves in a Linear and a BatchNorm1d."""
    model = lib.nn.Sequential(lib.nn.Linear(3, 2), lib.nn.BatchNorm1d(2))
    model[0].weight.requires_grad_(False)
    state = {k: lib.tensor(np.arange(v.numel(), dtype=np.float64).reshape(tuple(v.shape)))
             for k, v in model.state_dict().items() if "num_batches" not in k}
    state["1.num_batches_tracked"] = lib.tensor(4)
    model.load_state_dict(state, assign=assign)
    weight, bias, mean = model[0].weight, model[0].bias, model[1].running_mean
    return dict(
        weight_dtype=str(weight.dtype).split(".")[-1],
        weight_is_parameter=isinstance(weight, lib.nn.Parameter),
        requires_grad=(weight.requires_grad, bias.requires_grad),
        shares=(weight.data_ptr() == state["0.weight"].data_ptr(),
                mean.data_ptr() == state["1.running_mean"].data_ptr()),
        values=weight.detach().numpy().tolist(),
        parameters=len(list(model.parameters())),
    )


@pytest.mark.parametrize("assign", [False, True])
def test_load_state_dict_assign_takes_the_state_dict_tensors(assign):
    ours, theirs = _assigned(px, assign), _assigned(torch, assign)
    assert ours == theirs
    assert ours["weight_dtype"] == ("float64" if assign else "float32")


class _Failing:
    """A module whose forward raises, built for either library."""

    @staticmethod
    def make(lib):
        class Failing(lib.nn.Module):
            def forward(self, x):
                raise ValueError("forward failed")
        return Failing()


def _hook_calls(lib, fail, hook_raises=False):
    module = _Failing.make(lib) if fail else lib.nn.Identity()
    calls = []

    def always(mod, args, output):
        calls.append(("always", output is None))
        if hook_raises:
            raise KeyError("hook failed")

    module.register_forward_hook(always, always_call=True)
    module.register_forward_hook(lambda mod, args, output: calls.append(("plain", False)))
    module.register_forward_hook(lambda mod, args, kwargs, output: calls.append(("kw", False)),
                                 with_kwargs=True, always_call=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module(lib.ones(2))
            error = None
        except ValueError as e:
            error = str(e)
    return calls, error, len(caught)


@pytest.mark.parametrize("fail, hook_raises", [(False, False), (True, False), (True, True)])
def test_forward_hook_always_call_runs_when_forward_raises(fail, hook_raises):
    assert _hook_calls(px, fail, hook_raises) == _hook_calls(torch, fail, hook_raises)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_transformer_encoder_nested_tensor_path_zeroes_padding():
    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    pad = np.zeros((3, 5), bool)
    pad[0, 3:], pad[1, 1:], pad[2, :] = True, True, True
    for enable in (True, False):
        models = []
        for lib in LIBS:
            lib.manual_seed(0)
            layer = lib.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            models.append(lib.nn.TransformerEncoder(layer, 2, norm=lib.nn.LayerNorm(8),
                                                    enable_nested_tensor=enable))
        tm, pm = models
        pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
        for training in (False, True):
            tm.train(training), pm.train(training)
            with torch.no_grad(), px.no_grad():
                t = tm(torch.tensor(x), src_key_padding_mask=torch.tensor(pad)).numpy()
                p = pm(px.tensor(x), src_key_padding_mask=px.tensor(pad)).numpy()
            if not enable and not training:
                # PyTorch's fused layer gives NaN on the fully padded sequence: compare the rest
                t, p = t[:2], p[:2]
            np.testing.assert_allclose(p, t, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_transformer_encoder_mask_check_and_right_aligned_padding():
    x = np.random.default_rng(2).standard_normal((2, 4, 8)).astype(np.float32)
    # row 0 pads before a valid position: not left-aligned
    pad = np.array([[True, False, False, False], [False, False, True, True]])
    outputs = []
    for lib in LIBS:
        lib.manual_seed(0)
        layer = lib.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        outputs.append(lib.nn.TransformerEncoder(layer, 1, mask_check=True).eval())
    tm, pm = outputs
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    with torch.no_grad(), px.no_grad():
        t = tm(torch.tensor(x), src_key_padding_mask=torch.tensor(pad)).numpy()
        p = pm(px.tensor(x), src_key_padding_mask=px.tensor(pad)).numpy()
        np.testing.assert_allclose(p, t, rtol=1e-4, atol=1e-5)   # PyTorch leaves its path
        pm.mask_check = False
        with pytest.raises(NotImplementedError, match="mask_check"):
            pm(px.tensor(x), src_key_padding_mask=px.tensor(pad))


def test_transformer_encoder_warns_like_pytorch_when_nested_tensors_cannot_apply():
    messages = []
    for lib in LIBS:
        layer = lib.nn.TransformerEncoderLayer(8, 2, 16, batch_first=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encoder = lib.nn.TransformerEncoder(layer, 1, enable_nested_tensor=True)
        messages.append([str(w.message) for w in caught if "nested" in str(w.message)])
        assert encoder.use_nested_tensor is False
    assert messages[0] == messages[1] and len(messages[0]) == 1


def test_softmax_stacklevel_points_where_pytorch_points():
    def where(F, lib, name, level):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(F, name)(lib.ones(2, 3), _stacklevel=level)
        return caught[0].filename == __file__, str(caught[0].message)

    for name in ("softmax", "log_softmax", "softmin"):
        for level in (1, 3):
            assert where(px.nn.functional, px, name, level) == \
                where(torch.nn.functional, torch, name, level)


# ---- tensors -------------------------------------------------------------------------------
def test_copy_and_type_pass_non_blocking_on(monkeypatch):
    seen = []
    original = px.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("non_blocking"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(px.Tensor, "to", spy)
    t = px.zeros(3)
    assert t.type("torch.DoubleTensor", non_blocking=True).dtype == px.float64
    assert t.type(px.float16, non_blocking=True).dtype == px.float16
    assert seen == [True, True]
    np.testing.assert_array_equal(t.copy_(px.arange(3.0), non_blocking=True).numpy(),
                                  torch.zeros(3).copy_(torch.arange(3.0), non_blocking=True))


def test_is_pinned_device_argument_is_deprecated_as_in_pytorch():
    results = []
    for lib in LIBS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pinned = lib.ones(2).is_pinned("cuda")
        results.append((pinned, [(w.category, str(w.message).split(" (Triggered")[0])
                                 for w in caught]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lib.ones(2).is_pinned()
    assert results[0] == results[1] and results[0][1][0][0] is DeprecationWarning


def test_is_conj_and_is_neg_read_their_argument():
    for name in ("is_conj", "is_neg"):
        assert getattr(px, name)(px.ones(2)) is getattr(torch, name)(torch.ones(2)) is False
        for lib in LIBS:
            with pytest.raises(TypeError, match="must be Tensor, not list"):
                getattr(lib, name)([1.0])


@pytest.mark.parametrize("fn", ["pinv", "matrix_rank"])
def test_linalg_hermitian_reads_the_lower_triangle(fn):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 4, 4))
    a[1, 0, :] = 0     # rank 3 if read whole; its lower triangle makes a full-rank symmetric
    for hermitian in (False, True):
        t = getattr(torch.linalg, fn)(torch.tensor(a), hermitian=hermitian).numpy()
        p = getattr(px.linalg, fn)(px.tensor(a), hermitian=hermitian).numpy()
        np.testing.assert_allclose(p, t, rtol=1e-10, atol=1e-10)
    if fn == "pinv":
        sym = a + np.swapaxes(a, -1, -2)
        tt, pt = torch.tensor(sym, requires_grad=True), px.tensor(sym, requires_grad=True)
        (torch.linalg.pinv(tt, hermitian=True) ** 2).sum().backward()
        (px.linalg.pinv(pt, hermitian=True) ** 2).sum().backward()
        np.testing.assert_allclose(pt.grad.numpy(), tt.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_assert_close_allow_subclasses_false_requires_equal_types():
    outcomes = []
    for lib, testing in ((torch, torch.testing), (px, px.testing)):
        row = []
        for actual, expected in ((lib.nn.Parameter(lib.ones(2)), lib.ones(2)),
                                 ([lib.nn.Parameter(lib.ones(2))], [lib.ones(2)]),
                                 (lib.ones(2), lib.ones(2))):
            for allow in (True, False):
                try:
                    testing.assert_close(actual, expected, allow_subclasses=allow)
                    row.append("ok")
                except TypeError as e:
                    row.append(str(e).split(" of type")[0])
        outcomes.append(row)
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][:2] == ["ok", "No comparison pair was able to handle inputs"]


# ---- autograd.functional strict=True -------------------------------------------------------
STRICT_FUNCTIONS = {
    "one input unused": lambda a, b: (a * a).sum(),
    "linear": lambda a, b: (a * 2).sum() + (b * 3).sum(),
    "cubic": lambda a, b: (a ** 3).sum() + (b ** 3).sum(),
}


def _strict(F, lib, fn, name, create_graph, constant):
    x = np.array([1.0, 2.0, 3.0])
    func = (lambda a, b: lib.ones(1).sum()) if constant else STRICT_FUNCTIONS[name]
    try:
        _, out = getattr(F, fn)(func, (lib.tensor(x), lib.tensor(x)),
                                (lib.tensor(x), lib.tensor(x)), create_graph=create_graph,
                                strict=True)
    except RuntimeError as e:
        return "error", str(e)
    out = out if isinstance(out, tuple) else (out,)
    return "ok", [np.asarray(o.detach().numpy()).tolist() for o in out]


@pytest.mark.parametrize("fn", ["jvp", "vhp"])
@pytest.mark.parametrize("name", list(STRICT_FUNCTIONS) + ["constant"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_strict_raises_where_pytorch_raises(fn, name, create_graph):
    constant = name == "constant"
    name = "linear" if constant else name
    assert _strict(PF, px, fn, name, create_graph, constant) == \
        _strict(TF, torch, fn, name, create_graph, constant)


# ---- data, checkpoint ----------------------------------------------------------------------
def test_sampler_data_source_warns_that_it_is_unused():
    with pytest.warns(UserWarning, match="data_source"):
        Sampler([1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sampler()


def test_checkpoint_runs_forward_and_recomputation_inside_context_fn():
    logs = []
    for lib, checkpoint in ((torch, torch_checkpoint), (px, px_checkpoint)):
        log = []

        @contextlib.contextmanager
        def context(tag):
            log.append("enter " + tag)
            yield
            log.append("exit " + tag)

        x = lib.ones(2, requires_grad=True)
        y = checkpoint(lambda t: t * t, x, use_reentrant=False,   # t * t saves t: recomputed
                       context_fn=lambda: (context("forward"), context("recompute")))
        y.sum().backward()
        logs.append(log)
    # PyTorch leaves its recomputation context open until later; Phalanx closes it at once
    assert logs[0][:3] == logs[1][:3] == ["enter forward", "exit forward", "enter recompute"]
    assert logs[1][3:] == ["exit recompute"]


# ---- distributed (a world of one) ----------------------------------------------------------
@pytest.mark.mpi_skip
def test_new_group_options_are_honoured_or_refused(world_of_one):
    group = dist.new_group([0], backend="gloo", group_desc="data parallel")
    assert group.group_desc == "data parallel"
    assert dist.new_group([0]).group_desc == "undefined"
    for kwargs in ({"backend": "nccl"}, {"pg_options": object()},
                   {"use_local_synchronization": True}, {"device_id": 0}):
        with pytest.raises(NotImplementedError, match=next(iter(kwargs))):
            dist.new_group([0], **kwargs)
    with pytest.raises(TypeError):
        dist.new_group([0], no_such_option=1)


@pytest.mark.mpi_skip
def test_barriers_check_their_options(world_of_one):
    dist.barrier(device_ids=[0])         # CPU backends ignore the GPU list, as PyTorch's do
    with pytest.raises(TypeError, match="List\\[int\\]"):
        dist.barrier(device_ids=0)
    dist.monitored_barrier()
    with pytest.raises(NotImplementedError, match="timeout"):
        dist.monitored_barrier(timeout=5)
    with pytest.raises(NotImplementedError, match="wait_all_ranks"):
        dist.monitored_barrier(wait_all_ranks=True)


@pytest.mark.mpi_skip
def test_ddp_check_reduction_is_deprecated_as_in_pytorch(world_of_one):
    with pytest.warns(FutureWarning, match="check_reduction"):
        dist.DistributedDataParallel(px.nn.Linear(2, 2), check_reduction=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        dist.DistributedDataParallel(px.nn.Linear(2, 2))


@pytest.mark.mpi_skip
def test_init_process_group_device_id_is_checked(world_of_one):
    dist.destroy_process_group()
    dist.init_process_group(device_id="cpu")
    dist.destroy_process_group()
    if px.cuda.device_count() == 0:
        with pytest.raises(ValueError, match="no usable GPU"):
            dist.init_process_group(device_id=0)
    else:
        dist.init_process_group(device_id=0)     # a world of one works on its local rank's GPU
        dist.destroy_process_group()
        if px.cuda.device_count() > 1:
            with pytest.raises(NotImplementedError, match="device_id"):
                dist.init_process_group(device_id=1)
    dist.init_process_group()     # the fixture tears this one down
