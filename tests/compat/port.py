"""Port a PyTorch script to Phalanx by rewriting its imports, and nothing else.

    python tests/compat/port.py script.py > script_phalanx.py

The rewrite is mechanical and touches only `import` statements that name `torch` at the
start of a line (other lines, strings and comments stay as they are):

    import torch                       -> import phalanx as torch
    import torch as T                  -> import phalanx as T
    import torch.nn as nn              -> import phalanx.nn as nn
    import torch.nn.functional         -> import phalanx.nn.functional, phalanx as torch
    import os, torch, time             -> import os, phalanx as torch, time
    from torch import nn, optim        -> from phalanx import nn, optim
    from torch.utils.data import X     -> from phalanx.utils.data import X

`import phalanx as torch` keeps every later `torch.xxx` in the script pointing at Phalanx, so
the body of the script is not edited: whatever it calls must exist in Phalanx under PyTorch's
name. A bare `import torch.a.b` binds the name `torch` in Python, hence `phalanx as torch`
next to it.
"""
import re
import sys

_MODULE = r"[A-Za-z_][\w.]*(?:\s+as\s+\w+)?"
_IMPORT = re.compile(rf"^(?P<indent>\s*)import\s+(?P<items>{_MODULE}(?:\s*,\s*{_MODULE})*)"
                     r"(?P<rest>\s*(#.*)?)$")
_ITEM = re.compile(r"(?P<name>[\w.]+)(?:\s+as\s+(?P<alias>\w+))?")
_FROM = re.compile(r"^(?P<indent>\s*)from\s+torch(?P<sub>(\.\w+)*)\s+import\s")


def _port_item(item):
    """The items an `import` item becomes: itself unless it names torch or a submodule."""
    m = _ITEM.fullmatch(item.strip())
    name, alias = m["name"], m["alias"]
    if name != "torch" and not name.startswith("torch."):
        return [item.strip()]
    sub = name[len("torch"):]
    if alias:
        return [f"phalanx{sub} as {alias}"]
    return [f"phalanx{sub}", "phalanx as torch"] if sub else ["phalanx as torch"]


def port_line(line):
    m = _IMPORT.match(line)
    if m:
        items = [i for item in m["items"].split(",") for i in _port_item(item)]
        items = list(dict.fromkeys(items))           # one `phalanx as torch` is enough
        ported = f"{m['indent']}import {', '.join(items)}{m['rest'] or ''}"
        original = [i.strip() for i in m["items"].split(",")]
        return line if items == original else ported
    m = _FROM.match(line)
    if m:
        return f"{m['indent']}from phalanx{m['sub']} import " + line[m.end():]
    return line


def port(source):
    """The Phalanx version of a PyTorch script's source text."""
    return "".join(port_line(line.rstrip("\n")) + ("\n" if line.endswith("\n") else "")
                   for line in source.splitlines(keepends=True))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        sys.stdout.write(port(f.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
