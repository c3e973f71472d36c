"""Alternating turns: how benchmarks share a machine whose speed drifts.

A shared VM's speed drifts (by up to 2x within minutes here), so subjects measured one after
another compare a good minute with a bad one. Taking turns in rounds, in order and then in
reverse (ABC CBA ABC ...), spreads any drift over every subject alike: a linear one cancels
over each pair of rounds.
"""

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def alternating(items: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, item) for each turn: `items` in order in even rounds, reversed in odd ones."""
    for turn in range(rounds):
        for item in items if turn % 2 == 0 else items[::-1]:
            yield turn, item
