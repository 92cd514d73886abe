"""No argument may be accepted and ignored (issue 10): every parameter of Phalanx's public,
PyTorch-mirroring callables is read by its body (see `ignored_args_finder.py` for the walk),
or is listed below with the reason it needs no reading.

A new finding fails `test_every_ignored_parameter_is_honoured_or_allow_listed`: honour the
argument as PyTorch does, or raise NotImplementedError naming it for a non-default value. An
entry that no longer matches fails `test_every_allow_list_entry_still_matches`: delete it.
`python tests/surface/ignored_args_finder.py` prints the findings.
"""
import ast
import functools
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _finder():
    spec = importlib.util.spec_from_file_location(
        "ignored_args_finder", os.path.join(HERE, "ignored_args_finder.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


finder = _finder()

# reason -> the unread parameters it covers ("module.qualname(parameter)")
ALLOWED = {
    "the collective is complete on return either way: async_op only moves when the caller "
    "would wait": [
        "phalanx.distributed.tensor.dtensor.DTensor.redistribute(async_op)",
    ],
    "buffering only: how far PyTorch's writer threads copy ahead; one thread writes each "
    "rank's file here, and the checkpoint is the same": [
        "phalanx.distributed.checkpoint.saver.FileSystemWriter.__init__(per_thread_copy_ahead)",
    ],
    "FSDP's CPU offload runs only with parameters on the CPU already (GPU parameters are "
    "refused), so there is no host-to-device copy for pinned memory to speed up": [
        "phalanx.distributed.fsdp.fully_shard.CPUOffloadPolicy.__init__(pin_memory)",
    ],
    "PyTorch ignores it too: the *_with_indices functions always return (output, indices)": [
        "phalanx.nn.functional.fractional_pooling.fractional_max_pool2d_with_indices"
        "(return_indices)",
        "phalanx.nn.functional.fractional_pooling.fractional_max_pool3d_with_indices"
        "(return_indices)",
        "phalanx.nn.functional.pooling.adaptive_max_pool1d_with_indices(return_indices)",
        "phalanx.nn.functional.pooling.adaptive_max_pool2d_with_indices(return_indices)",
        "phalanx.nn.functional.pooling.max_pool1d_with_indices(return_indices)",
        "phalanx.nn.functional.pooling.max_pool2d_with_indices(return_indices)",
        "phalanx.nn.functional.pooling3d.adaptive_max_pool3d_with_indices(return_indices)",
        "phalanx.nn.functional.pooling3d.max_pool3d_with_indices(return_indices)",
    ],
    "PyTorch ignores it too: nn.Identity documents its arguments as unused": [
        "phalanx.nn.modules.linear.Identity.__init__(args)",
        "phalanx.nn.modules.linear.Identity.__init__(kwargs)",
    ],
    "kernel choice only: PyTorch's foreach and per-tensor loops give the same values (both "
    "run on CPU in 2.13)": [
        "phalanx.nn.utils.clip_grad.clip_grad_norm(foreach)",
        "phalanx.nn.utils.clip_grad.clip_grad_norm_(foreach)",
        "phalanx.nn.utils.clip_grad.clip_grad_value_(foreach)",
        "phalanx.nn.utils.clip_grad.clip_grads_with_norm_(foreach)",
        "phalanx.nn.utils.clip_grad.get_total_norm(foreach)",
    ],
    "kernel choice only: which of the allowed attention kernels PyTorch tries first; they "
    "compute the same, and Phalanx has one": [
        "phalanx.nn.attention.sdpa_kernel(set_priority)",
    ],
    "kernel choice only: PyTorch 2.13 copies a bucket's gradients with one batched CUDA "
    "kernel instead of one per parameter, the same values": [
        "phalanx.distributed.ddp.DistributedDataParallel.__init__(batched_grad_copy)",
    ],
    "PyTorch ignores it too: the no-op comm hook has no state, and a pruning method, run as "
    "a forward pre-hook, recomputes the weight whatever the inputs": [
        "phalanx.distributed.comm_hooks.noop_hook(state)",
        "phalanx.nn.utils.prune.BasePruningMethod.__call__(inputs)",
    ],
    "no TorchScript graph is made (phalanx.jit returns the eager program, which computes the "
    "same values): these only shape, check or store a compiled graph; annotate's type and "
    "ignore's keywords are ignored by eager PyTorch too": [
        "phalanx.jit.annotate(the_type)",
        "phalanx.jit.freeze(optimize_numerics)",
        "phalanx.jit.freeze(preserved_attrs)",
        "phalanx.jit.ignore(kwargs)",
        "phalanx.jit.optimize_for_inference(other_methods)",
        "phalanx.jit.script(_frames_up)",
        "phalanx.jit.script(_rcb)",
        "phalanx.jit.script(example_inputs)",
        "phalanx.jit.script(optimize)",
        "phalanx.jit.trace(_compilation_unit)",
        "phalanx.jit.trace(_force_outplace)",
        "phalanx.jit.trace(_module_class)",
        "phalanx.jit.trace(_store_inputs)",
        "phalanx.jit.trace(check_tolerance)",
        "phalanx.jit.trace(optimize)",
        "phalanx.jit.trace(strict)",
        "phalanx.jit.trace_module(_compilation_unit)",
        "phalanx.jit.trace_module(_force_outplace)",
        "phalanx.jit.trace_module(_module_class)",
        "phalanx.jit.trace_module(_store_inputs)",
        "phalanx.jit.trace_module(check_tolerance)",
        "phalanx.jit.trace_module(optimize)",
        "phalanx.jit.trace_module(strict)",
    ],
    "PyTorch ignores them too for a local hubconf (they steer its GitHub download and "
    "cache, which Phalanx refuses)": [
        "phalanx.hub.help(force_reload)",
        "phalanx.hub.help(skip_validation)",
        "phalanx.hub.help(trust_repo)",
        "phalanx.hub.list(force_reload)",
        "phalanx.hub.list(skip_validation)",
        "phalanx.hub.list(trust_repo)",
        "phalanx.hub.list(verbose)",
        "phalanx.hub.load(force_reload)",
        "phalanx.hub.load(skip_validation)",
        "phalanx.hub.load(trust_repo)",
        "phalanx.hub.load(verbose)",
    ],
    "a file from the network is read weights-only whatever PyTorch's default says (its "
    "weights load either way; anything else is refused by name: trust it explicitly with "
    "px.load(path, weights_only=False))": [
        "phalanx.hub.load_state_dict_from_url(weights_only)",
    ],
    "format or strategy choice only: PyTorch's pickle options choose how its own format is "
    "written (Phalanx writes safetensors), mmap how a file is read, and in_order=False only "
    "permits out-of-order batches": [
        "phalanx.serialization.save(pickle_protocol)",
        "phalanx.serialization.save(_use_new_zipfile_serialization)",
        "phalanx.serialization.save(_disable_byteorder_record)",
        "phalanx.serialization.save(pickle_module)",
        "phalanx.serialization.load(mmap)",
        "phalanx.data.dataloader.DataLoader.__init__(in_order)",
    ],
    "the same check, whatever the flag: gradcheck compares whole Jacobians (PyTorch's "
    "fast_mode projects them for speed), and every Jacobian row is a backward with the other "
    "outputs' gradients undefined (what check_undefined_grad asks for)": [
        "phalanx.autograd.gradcheck.gradcheck(fast_mode)",
        "phalanx.autograd.gradcheck.gradcheck(check_undefined_grad)",
        "phalanx.autograd.gradcheck.gradgradcheck(fast_mode)",
        "phalanx.autograd.gradcheck.gradgradcheck(check_undefined_grad)",
    ],
    "user data: a Measurement carries its metadata for the caller, as PyTorch's does, and "
    "never reads it": [
        "phalanx.utils.benchmark.Measurement.__init__(metadata)",
    ],
    "safety only: sparse tensors' indices are always checked as they are made (O(nnz)); "
    "PyTorch's check_invariants=False skips checks whose failure is undefined behaviour "
    "there": [
        "phalanx.tensor.sparse_coo.sparse_coo_tensor(check_invariants)",
    ],
    "as PyTorch: a Join forwards the same keyword arguments to every joinable's join_hook, "
    "and each reads only those meant for it": [
        "phalanx.distributed.ddp.DistributedDataParallel.join_hook(kwargs)",
    ],
    "implementation choice only: PyTorch's TCPStore server on libuv or its older loop, the "
    "same store (Phalanx's is ZeroMQ either way)": [
        "phalanx.distributed.torch_stores.TCPStore.__init__(use_libuv)",
    ],
    "kernel choice only: cuDNN or the native kernel in PyTorch, the same values": [
        "phalanx.functional_aliases.batch_norm(cudnn_enabled)",
        "phalanx.functional_aliases.group_norm(cudnn_enabled)",
        "phalanx.functional_aliases.instance_norm(cudnn_enabled)",
        "phalanx.functional_aliases.layer_norm(cudnn_enable)",
    ],
    "the sort is always stable, which also meets stable=False (ties in any order)": [
        "phalanx.tensor.ops.sorting.argsort(stable)",
        "phalanx.tensor.ops.sorting.sort(stable)",
    ],
    "results come sorted, which also meets sorted=False (any order; PyTorch's CPU unique "
    "sorts too)": [
        "phalanx.tensor.ops.sorting.topk(sorted)",
        "phalanx.tensor.ops.sorting.unique(sorted)",
    ],
    "compile returns the eager program: disable=True asks for exactly that, and fullgraph/"
    "dynamic only steer graph capture, which never happens (no graph breaks, no shape "
    "specialisation)": [
        "phalanx.compile_api.compile(disable)",
        "phalanx.compile_api.compile(dynamic)",
        "phalanx.compile_api.compile(fullgraph)",
    ],
    "Phalanx has no bfloat16 on a GPU, native or emulated: False for either value": [
        "phalanx.cuda.is_bf16_supported(including_emulation)",
    ],
    "Phalanx has no storage type (a tensor owns its array): no object is a storage": [
        "phalanx.tensor.settings.is_storage(obj)",
    ],
    "Phalanx never uses cuDNN: no tensor is acceptable to it": [
        "phalanx.backends.cudnn.is_acceptable(tensor)",
    ],
    "Phalanx has one layout (strided), so the layout check always passes": [
        "phalanx.testing.assert_close(check_layout)",
    ],
    "Phalanx has no build-time accelerator apart from the one found at run time: both values "
    "give that answer": [
        "phalanx.accelerator.current_accelerator(check_available)",
    ],
    "PyTorch ignores it too: torch.cpu.synchronize documents `device` as ignored (one CPU)": [
        "phalanx.cpu.synchronize(device)",
    ],
    "a public attribute (`event.id`) that the user reads, as in PyTorch's FunctionEvent": [
        "phalanx.profiler.events.FunctionEvent.__init__(id)",
    ],
    "only lets PyTorch stop a recomputation once the saved tensors backward needs are "
    "back; Phalanx recomputes the whole segment (values and gradients are the same)": [
        "phalanx.utils.checkpoint.checkpoint(early_stop)",
    ],
    "staging device of the pickled bytes in PyTorch; the objects received are the same": [
        "phalanx.distributed.collectives.broadcast_object_list(device)",
    ],
    "memory layout only: parameter shards (ZeRO) always live in flat buckets here; the "
    "values are the same for either value": [
        "phalanx.distributed.zero.ZeroRedundancyOptimizer.__init__(parameters_as_bucket_view)",
    ],
}
ALLOWED_KEYS = {key for keys in ALLOWED.values() for key in keys}


@functools.lru_cache(maxsize=None)
def report():
    return finder.scan()


def test_every_ignored_parameter_is_honoured_or_allow_listed():
    found = report()
    new = sorted(set(found.findings) - ALLOWED_KEYS)
    print(f"{found.callables} callables, {found.parameters} parameters scanned; "
          f"{len(found.findings)} unread, {len(ALLOWED_KEYS)} allow-listed; "
          f"{len(found.no_source)} public names without Python source (skipped): "
          f"{sorted(found.no_source)}")
    assert not new, (
        "these parameters are accepted and never read: honour each as PyTorch does, or raise "
        "NotImplementedError naming it for a non-default value (or, if PyTorch ignores it "
        "too, allow-list it here with the reason):\n" +
        "\n".join(f"  {key}  (public as {found.findings[key]})" for key in new))


def test_every_allow_list_entry_still_matches():
    stale = sorted(ALLOWED_KEYS - set(report().findings))
    assert not stale, f"allow-list entries that match nothing any more, delete them: {stale}"


def test_the_walk_covers_the_public_surface():
    found = report()
    assert found.callables > 1000 and found.parameters > 3000, (found.callables,
                                                                 found.parameters)
    scanned = {name for name, _ in finder._public_callables()}
    for name in ("phalanx.zeros", "phalanx.Tensor.to", "phalanx.Tensor.copy_",
                 "phalanx.nn.functional.conv2d", "phalanx.nn.Linear.__init__",
                 "phalanx.nn.LSTM.forward", "phalanx.nn.Module.load_state_dict",
                 "phalanx.optim.SGD.__init__", "phalanx.optim.lr_scheduler.StepLR.__init__",
                 "phalanx.utils.data.DataLoader.__init__", "phalanx.distributed.barrier",
                 "phalanx.nn.parallel.DistributedDataParallel.__init__",
                 "phalanx.autograd.functional.jvp", "phalanx.distributions.Normal.log_prob",
                 "phalanx.linalg.pinv", "phalanx.fft.fft", "phalanx.special.erf",
                 "phalanx.cuda.set_device", "phalanx.GradScaler.__init__",
                 "phalanx.save", "phalanx.load"):
        assert name in scanned, f"{name} is not walked"


# ---- the finder itself: it must see what it is meant to see -------------------------------
def _verdict(source, tmp_path):
    """The finder's verdict on the first function of `source`, loaded from a file as a module
    whose name starts with 'phalanx' (so calls between its functions are followed)."""
    path = tmp_path / "phalanx_finder_case.py"
    path.write_text(source)
    namespace = {"__name__": "phalanx_finder_case"}
    exec(compile(source, str(path), "exec"), namespace)
    fn = namespace[ast.parse(source).body[0].name]
    params, unread = finder._unread_parameters(fn)
    return unread + finder._lost_in_callees(fn, params, unread)


@pytest.mark.parametrize("source, unread", [
    ("def f(x, device=None):\n    return x\n", ["device"]),
    ("def f(x, timeout=None):\n    del timeout\n    return x\n", ["timeout"]),
    ("def f(x, flag=False):\n    _ = flag\n    return x\n", ["flag"]),
    ("def f(x, device=None):\n    device = 'cpu'\n    return x.to(device)\n", ["device"]),
    ("def f(x, **kwargs):\n    return x + kwargs.get('alpha', 1)\n", ["kwargs"]),
    ("def f(x, **kwargs):\n    return g(x, **kwargs)\n", []),
    ("def f(x, alpha=1):\n    return map(lambda v: v * alpha, x)\n", []),
    ("def f(x, alpha=1):\n    def inner():\n        return x * alpha\n    return inner()\n", []),
    ("def f(x, alpha=1):\n    return g(**locals())\n", []),
    ("def f(self, x):\n    raise NotImplementedError\n", []),
    ("def f(self, size, pin_memory=False):\n    self._pin_memory_never_read_anywhere = "
     "pin_memory\n    return size\n", ["pin_memory"]),
    # passed on to a helper that ignores it, or honours it
    ("def f(x, stable=False):\n    return _g(x, stable)\n\n"
     "def _g(x, stable):\n    return x\n", ["stable"]),
    ("def f(x, stable=False):\n    return _g(x, stable=stable)\n\n"
     "def _g(x, stable):\n    return sorted(x, reverse=stable)\n", []),
])
def test_the_finder_flags_unread_parameters(source, unread, tmp_path):
    assert _verdict(source, tmp_path) == unread
