"""A worker drawing a tqdm progress bar (redraws end in \r) over about a second."""
import sys
import time

from tqdm import tqdm

for _ in tqdm(range(40), desc="work", mininterval=0, file=sys.stdout):
    time.sleep(0.025)
print("finished", flush=True)
