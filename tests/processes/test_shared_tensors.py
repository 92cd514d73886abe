"""Tensor.share_memory_ / Module.share_memory: Hogwild-style training, where processes
started with fork or spawn update one model's weights, and shared tensors that come back
through a Queue are the same memory. Real processes; the script is run as PyTorch's Hogwild
example runs, under `if __name__ == "__main__"`."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import phalanx as px

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import phalanx as px
    import phalanx.multiprocessing as mp


    def train(rank, model, queue, plain):
        opt = px.optim.SGD(model.parameters(), lr=0.1)
        x = px.ones(4, 3) * (rank + 1)
        for _ in range(5):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
        plain.add_(1)                 # not shared: the parent must not see this
        queue.put(model.weight)       # shared: it comes back as the same memory


    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        px.manual_seed(0)
        model = px.nn.Linear(3, 2)
        assert model.share_memory() is model
        assert all(p.is_shared() for p in model.parameters())
        w0, b0 = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
        plain = px.zeros(2)
        queue = ctx.Queue()
        got = []
        for rank in range(2):         # one after the other: updates cannot race
            p = ctx.Process(target=train, args=(rank, model, queue, plain))
            p.start()
            got.append(queue.get(timeout=60))
            p.join(60)
            assert p.exitcode == 0, p.exitcode
        # d(sum(Wx + b))/dW = sum of the rows of x, whatever W is: 5 steps of 0.1 * 4 * (r + 1)
        np.testing.assert_allclose(model.weight.detach().numpy(), w0 - 6.0, rtol=1e-6)
        np.testing.assert_allclose(model.bias.detach().numpy(), b0 - 4.0, rtol=1e-6)
        assert plain.tolist() == [0.0, 0.0]
        assert got[0].is_shared()
        with px.no_grad():
            got[0].zero_()            # written through the queue's copy: the model sees it
        assert float(model.weight.abs().sum()) == 0.0
        print("hogwild ok")
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_train_one_shared_model(tmp_path, method):
    script = tmp_path / "hogwild.py"
    script.write_text(SCRIPT)
    parent = os.path.dirname(os.path.abspath(list(px.__path__)[0]))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, str(script), method], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = proc.communicate(timeout=100)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0 and "hogwild ok" in out, out
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(f"phalanx-{proc.pid}-")]
    assert not leftovers, leftovers      # the process that shared removed its files at exit


def test_sharing_in_one_process():
    t = px.arange(6.0).reshape(2, 3)
    view = t[0]
    assert not t.is_shared() and t.share_memory_() is t and t.is_shared()
    assert t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert t.share_memory_() is t                       # already shared: nothing moves
    assert not view.is_shared()                         # PyTorch too: the storage moved
    assert t[1].is_shared() and t.t().is_shared()       # views of shared memory are shared
    copy = pickle.loads(pickle.dumps(t))                # plain pickle copies, as in PyTorch
    copy.add_(1)
    assert t[0, 0].item() == 0.0 and not copy.is_shared()
    empty = px.zeros(0).share_memory_()
    assert empty.is_shared() and empty.shape == (0,)
    grads = px.nn.Linear(2, 2)
    grads(px.ones(1, 2)).sum().backward()
    grads.share_memory()
    assert grads.weight.grad.is_shared()


def test_files_go_when_the_tensor_does():
    import gc
    from phalanx.tensor import shared_memory
    t = px.ones(4).share_memory_()
    path = shared_memory._segment_of(t._data)[0]
    assert os.path.exists(path) and oct(os.stat(path).st_mode & 0o777) == "0o600"
    del t
    gc.collect()
    assert not os.path.exists(path)
    with pytest.raises(RuntimeError, match="is gone"):
        shared_memory._attach(path, 16, 0, (4,), (4,), "<f4")
