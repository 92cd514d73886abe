"""`python -m phalanx.distributed.run ...`: torchrun's module form, the same as `phalanx run`."""
import sys

from ..launcher.cli import main as _cli


def main(args=None):
    return _cli(["run", *(sys.argv[1:] if args is None else args)])


if __name__ == "__main__":
    sys.exit(main())
