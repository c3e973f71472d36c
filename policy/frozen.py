"""A frozen dataclass with some fields changed, at a few calls where `dataclasses.replace` takes dozens.

Every settled call changes its result and its approval (`Settlement.end`); `replace` walks every field
of the class (a `getattr` each) and then runs `__init__` (an `object.__setattr__` each), some fifty calls
for the two. For a dataclass whose `__init__` only stores its fields (no `__post_init__`, no `InitVar`,
no `__slots__`) copying its fields' values is the same thing.
"""

from typing import Any, TypeVar

T = TypeVar("T")


def evolve(obj: T, **changes: Any) -> T:
    """`dataclasses.replace(obj, **changes)` for such a dataclass; raises TypeError for a name that is not
    a field. Only fields are copied: a `cached_property` computed on `obj` is computed anew on the copy."""
    fields = type(obj).__dataclass_fields__  # type: ignore[attr-defined]
    for name in changes:
        if name not in fields:
            raise TypeError(f"{type(obj).__name__} has no field {name!r}")
    state = {name: value for name, value in obj.__dict__.items() if name in fields}
    state.update(changes)
    copy: T = object.__new__(type(obj))
    copy.__dict__.update(state)
    return copy
