"""`phalanx.jit`: TorchScript's API answered with the eager program (what scripting and
tracing promise to compute), with what cannot be honoured refused."""
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

import phalanx as px
import phalanx.nn as nn


def test_script_and_trace_give_back_what_computes_the_same():
    with pytest.warns(DeprecationWarning, match="torch.jit.script` is deprecated"):
        @px.jit.script                                   # as PyTorch 2.13 warns
        def gelu_ish(x):
            return x * px.sigmoid(1.702 * x)

    x = px.tensor([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(gelu_ish(x).numpy(), (x * px.sigmoid(1.702 * x)).numpy())
    model = nn.Sequential(nn.Linear(3, 2))
    calls = []
    model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    traced = px.jit.trace(model, px.ones(4, 3), check_inputs=[(px.ones(2, 3),)])
    assert traced is model and calls == [(4, 3), (2, 3)]   # run on the examples, as tracing
    seen = []
    double = px.jit.trace(lambda x: seen.append(x) or x * 2,
                          example_kwarg_inputs={"x": px.ones(1)})
    assert len(seen) == 1 and double(px.ones(1)).item() == 2
    assert px.jit.trace_module(model, {"forward": px.ones(5, 3)}) is model
    assert calls[-1] == (5, 3)
    with pytest.raises(RuntimeError):                        # a wrong example fails here
        px.jit.trace(model, px.ones(4, 7))


def test_script_module_attributes_freeze_and_the_markers():
    class Counter(px.jit.ScriptModule):
        def __init__(self):
            super().__init__()
            self.count = px.jit.Attribute(0, int)

        @px.jit.export
        def bump(self):
            self.count += 1
            return self.count

    c = Counter()
    with pytest.warns(DeprecationWarning):
        assert c.bump() == 1 and px.jit.script(c) is c
    with pytest.raises(RuntimeError, match="eval mode"):
        px.jit.freeze(c)
    assert px.jit.freeze(c.eval()) is c and px.jit.optimize_for_inference(c) is c
    assert px.jit.ignore(len) is len and px.jit.ignore(drop=True)(len) is len
    assert px.jit.annotate(List[int], [1]) == [1] and px.jit.unused(len) is len
    assert px.jit.wait(px.jit.fork(lambda a, b: a + b, 2, b=3)) == 5
    previous = px.jit.set_fusion_strategy([("DYNAMIC", 3)])
    assert px.jit.set_fusion_strategy(previous) == [("DYNAMIC", 3)]
    with px.jit.strict_fusion():
        pass


@pytest.mark.parametrize("value, kind, expected", [
    ([1, 2], List[int], True), ([1, "a"], List[int], False), ({"a": 1}, Dict[str, int], True),
    ((1, "a"), Tuple[int, str], True), ((1,), Tuple[int, str], False),
    (None, Optional[int], True), (3.0, Optional[int], False), (px.ones(1), px.Tensor, True),
])
def test_isinstance_refines_container_types(value, kind, expected):
    assert px.jit.isinstance(value, kind) is expected


def test_archives_are_refused_with_the_way_to_save(tmp_path):
    with pytest.raises(NotImplementedError, match="state_dict"):
        px.jit.save(nn.Linear(1, 1), tmp_path / "m.pt")
    with pytest.raises(NotImplementedError, match="load_state_dict"):
        px.jit.load(tmp_path / "m.pt")
    with pytest.raises(NotImplementedError, match="Python"):
        px.jit.CompilationUnit("def f(x): return x")


def test_trace_takes_its_example_inputs_as_a_list_too():
    import torch
    for lib in (px, torch):
        model = lib.nn.Bilinear(3, 2, 4)
        traced = lib.jit.trace(model, [lib.rand(5, 3), lib.rand(5, 2)])
        assert traced(lib.rand(1, 3), lib.rand(1, 2)).shape == (1, 4)
