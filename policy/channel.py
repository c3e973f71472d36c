"""Which channel an approval may be given through: the client's form, the server's desk, or either.

A form "accept" proves only that some client code answered; a desk decision is signed by an
enrolled approver's passkey over exactly that approval. The policy chooses per rule.
"""

from collections.abc import Iterable
from enum import StrEnum


class Channel(StrEnum):
    FORM = "form"
    """The calling client's elicitation form (today's behaviour); no desk."""
    DESK = "desk"
    """A signed decision at the approval desk, even from a client that can show a form."""
    ANY = "any"
    """The form where the client can show one, else the desk."""


DEFAULT_CHANNEL = Channel.ANY


def strictest(channels: Iterable[Channel]) -> Channel:
    """The channel that satisfies every matched rule: the desk if any asks for it, else the form
    if any restricts to it, else either."""
    found = set(channels)
    for channel in (Channel.DESK, Channel.FORM):
        if channel in found:
            return channel
    return Channel.ANY


def route(allowed: Channel, *, form: bool, desk: bool) -> Channel | None:
    """Where to ask, given what the rule allows and what this client and server can do:
    `FORM` or `DESK`, or `None` when no allowed channel reaches a human."""
    if allowed is Channel.FORM:
        return Channel.FORM if form else None
    if allowed is Channel.DESK:
        return Channel.DESK if desk else None
    return Channel.FORM if form else Channel.DESK if desk else None
