"""The server settles its heap after startup: what startup built is left out of later collections."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from mcp_server.heap import settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # later tests collect as usual


@pytest.mark.usefixtures("unfrozen")
def test_what_startup_built_is_left_out_and_its_garbage_is_freed_first() -> None:
    built_at_startup = [[n] for n in range(1000)]
    garbage = weakref.ref(Node())
    assert garbage() is not None

    settle_heap()

    collected = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in collected for obj in built_at_startup)  # later collections never walk them
    assert gc.get_freeze_count() >= len(built_at_startup)
    assert garbage() is None  # collected before freezing, not kept for the life of the process
