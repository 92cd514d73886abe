"""Writes its pid (and a grandchild's) to OUT/pids_RANK, then sleeps: the signal tests kill the
launcher and check that every one of these processes is gone."""
import os
import subprocess
import sys
import time

out = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.path.join(out, f"pids_{os.environ['RANK']}.tmp"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(os.path.join(out, f"pids_{os.environ['RANK']}.tmp"),
           os.path.join(out, f"pids_{os.environ['RANK']}"))
time.sleep(600)
