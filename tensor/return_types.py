"""`phalanx.return_types`: the named tuples that ops returning several tensors give back
(`max(x, dim)` -> `return_types.max(values=..., indices=...)`), printed as PyTorch prints
its structseqs: one field per line."""
import collections

__all__ = []


def _repr(self):
    fields = ",\n".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
    return f"phalanx.return_types.{type(self).__name__}(\n{fields})"


def return_type(name, fields):
    """The named-tuple class `phalanx.return_types.<name>` with these fields (made once)."""
    existing = globals().get(name)
    if existing is not None:
        if existing._fields != tuple(fields):
            raise TypeError(f"return_types.{name} already has fields {existing._fields}")
        return existing
    cls = type(name, (collections.namedtuple(name, fields),),
               {"__slots__": (), "__repr__": _repr, "__module__": __name__})
    globals()[name] = cls
    __all__.append(name)
    return cls
