"""JSON objects read with each key once: Python's reader keeps a repeated key's last value, where a proxy, a
log or another reader may keep its first (`"approve": false, "approve": true`), so the host refuses both."""

from typing import Any


class KeyGivenTwice(ValueError):
    """An object of the JSON read gives `key` more than once."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key[:40]!r} is given more than once in one object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`'s `object_pairs_hook`: the object, or `KeyGivenTwice`."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise KeyGivenTwice(key)
        seen.add(key)
    return dict(pairs)
