"""breakpoint's debugger, supports_complex, get_backend_config and the coalesced collectives'
checks, in one process."""
import os
import subprocess
import sys

import pytest
import torch.distributed as tdist

import phalanx as px
import phalanx.distributed as dist


def test_supports_complex_as_pytorch():
    for name in ("SUM", "AVG", "MAX", "MIN", "PRODUCT"):
        assert dist.supports_complex(getattr(dist.ReduceOp, name)) == \
            tdist.supports_complex(getattr(tdist.ReduceOp, name)), name


def test_backend_config_of_a_world_of_one(world_of_one):
    assert dist.get_backend_config() == "cpu:local,cuda:local"
    assert dist.get_backend_config(dist.group.WORLD) == dist.get_backend_config()


def test_coalesced_collectives_check_their_tensors(world_of_one):
    with pytest.raises(TypeError, match=r"tensors\[1\] is int64.*share tensors\[0\]'s dtype"):
        dist.all_reduce_coalesced([px.zeros(2), px.zeros(2, dtype=px.int64)])
    with pytest.raises(ValueError, match="at least one tensor"):
        dist.all_reduce_coalesced([])
    with pytest.raises(TypeError, match="AVG needs a floating-point"):
        dist.all_reduce_coalesced([px.zeros(2, dtype=px.int64)], op=dist.ReduceOp.AVG)
    with pytest.raises(ValueError, match="1 output lists"):
        dist.all_gather_coalesced([[px.zeros(2)], [px.zeros(2)]], [px.zeros(2)])
    with pytest.raises(ValueError, match=r"output_tensor_lists\[0\]\[0\] has shape \(3,\)"):
        dist.all_gather_coalesced([[px.zeros(3)]], [px.zeros(2)])


@pytest.mark.timeout(60)
def test_breakpoint_opens_pdb_on_the_terminal(tmp_path):
    """The debugger reads /dev/stdin (here a pipe): it stops in breakpoint, 'up' reaches the
    caller's frame, 'c' goes on; a skipped call does not stop."""
    script = tmp_path / "debug_me.py"
    script.write_text(
        "import phalanx.distributed as dist\n"
        "dist.init_process_group()\n"
        "secret = 42\n"
        "for i in range(3):\n"
        "    dist.breakpoint(skip=2)\n"
        "print('done')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    parent = os.path.dirname(os.path.abspath(list(px.__path__)[0]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(script)], input="up\np secret\nc\n", env=env,
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ATTENTION" in proc.stdout and "(Pdb)" in proc.stdout
    assert "42" in proc.stdout and proc.stdout.count("ATTENTION") == 1
    assert proc.stdout.rstrip().endswith("done")
