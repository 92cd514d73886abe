"""Port a PyTorch script to Phalanx by rewriting its imports, and nothing else.

    python tests/compat/port.py script.py > script_phalanx.py

The rewrite is mechanical and touches only `import` statements that name `torch` at the
start of a line (other lines, strings and comments stay as they are):

    import torch                       -> import phalanx as torch
    import torch as T                  -> import phalanx as T
    import torch.nn as nn              -> import phalanx.nn as nn
    import torch.nn.functional         -> import phalanx.nn.functional; import phalanx as torch
    from torch import nn, optim        -> from phalanx import nn, optim
    from torch.utils.data import X     -> from phalanx.utils.data import X

`import phalanx as torch` keeps every later `torch.xxx` in the script pointing at Phalanx, so
the body of the script is not edited: whatever it calls must exist in Phalanx under PyTorch's
name. A bare `import torch.a.b` binds the name `torch` in Python, hence the second import.
"""
import re
import sys

_IMPORT = re.compile(r"^(?P<indent>\s*)import\s+torch(?P<sub>(\.\w+)*)(?P<alias>\s+as\s+\w+)?"
                     r"(?P<rest>\s*(#.*)?)$")
_FROM = re.compile(r"^(?P<indent>\s*)from\s+torch(?P<sub>(\.\w+)*)\s+import\s")


def port_line(line):
    m = _IMPORT.match(line)
    if m:
        indent, sub, alias, rest = m["indent"], m["sub"], m["alias"], m["rest"] or ""
        if alias:
            return f"{indent}import phalanx{sub}{alias}{rest}"
        if sub:
            return f"{indent}import phalanx{sub}; import phalanx as torch{rest}"
        return f"{indent}import phalanx as torch{rest}"
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
