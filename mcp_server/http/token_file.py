"""The static bearer tokens, the token file's re-read when it changes: revoking a leaked token (deleting its line) or
adding a caller takes no restart.

Checked on requests, at most once per `CHECK_INTERVAL_S` (no thread): a stat of the file (device, inode, size,
mtime_ns, mode) compared with the last one; a changed file is read with every check `parse_tokens` makes at start,
inline tokens included (a file naming an inline principal is invalid). A change is read once more at the next
check, so a write landing within the file system's timestamp tick (same size, same mtime) is not missed. A token
file that is not a regular file at start (a pipe: `--token-file <(pass show …)`) is read once, never re-read.

Fail closed: a file that turns invalid, unreadable, open to others or missing (deleted, or mid-rename) refuses all of
its tokens (401; inline tokens still work) until it is valid again, as does one replaced by a FIFO (never opened: that
would wait for a writer, holding every request); its error is logged once per change, never per request. Its
principals stay held from OAuth tokens meanwhile (`names`), as do a deleted line's until the file reads the same at
two checks (a file read mid-write lacks lines it keeps). A request already authenticated runs on; the next one with a
revoked token is 401, on an open session too (each request is authenticated).
"""

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from time import monotonic

from mcp_server.http.auth import parse_tokens

CHECK_INTERVAL_S = 1.0
"""Seconds between checks of the token file: how long a revoked token may still be accepted."""

log = logging.getLogger(__name__)

Signature = tuple[int, int, int, int, int] | None
"""Device, inode, size, mtime_ns and mode of the token file; None when it cannot be stat'ed (e.g. deleted)."""


class StaticTokens:
    """Principal -> token: the inline ones (fixed) and the token file's as it last read valid."""

    def __init__(self, inline: str | None, file: Path | None) -> None:
        """Raises ValueError naming what is wrong, as at start a bad file is a configuration error."""
        self._inline = inline
        self._fixed = parse_tokens(inline, None)
        self._seen = _signature(file) if file is not None else None
        self._valid = self._tokens = parse_tokens(inline, file)
        """`_valid`: the tokens as the file last read valid; `_tokens`: those accepted now (`_fixed` while invalid)."""
        self._file = file if _regular(self._seen) else None
        """The file watched: not a pipe (`--token-file <(pass show …)`), which reads empty or blocks a second time."""
        if file is not None and self._file is None:
            log.info("token file %s is not a regular file (a pipe?): read once at start, not re-read", file)
        self._settled = False
        """Whether the file has been read twice at its current signature (see the module docstring)."""
        self._refused: tuple[Signature, str] | None = None
        """The signature and error of the invalid file whose tokens are refused; None while it is valid."""
        self._checked = monotonic()
        self.names = frozenset(self._tokens)
        """Principals whose static token is configured or suspended by an invalid file: no JWT may carry one."""

    def current(self) -> Mapping[str, str]:
        """The tokens to accept now, the file checked first if the interval since the last check is over."""
        now = monotonic()
        if self._file is not None and now - self._checked >= CHECK_INTERVAL_S:
            self._checked = now
            self._check(self._file)
        return self._tokens

    def _check(self, file: Path) -> None:
        signature = _signature(file)
        if signature == self._seen and self._settled:
            return
        self._settled, self._seen = signature == self._seen, signature
        try:
            if signature is not None and not _regular(signature):  # a FIFO's open would wait, holding the event loop
                raise ValueError(f"token file {file} is no longer a regular file")
            tokens = parse_tokens(self._inline, file)
        except ValueError as exc:
            self._tokens = self._fixed
            if self._refused != (refused := (signature, str(exc))):
                log.error("token file refused, none of its tokens accepted until it is fixed: %s", exc)
            self._refused = refused
            return
        if self._refused is not None:
            log.warning("token file %s is valid again, its tokens accepted%s", file, _changes(self._valid, tokens))
        elif tokens != self._valid:
            log.info("token file %s re-read%s", file, _changes(self._valid, tokens))
        self._valid = self._tokens = tokens
        self._refused = None
        # A name leaves only once the file reads the same at two checks: one read mid-write (an in-place rewrite,
        # truncated first) lacks names it still holds, and a freed name is one an issuer's user may take.
        self.names = frozenset(tokens) if self._settled else self.names | tokens.keys()


def _signature(file: Path) -> Signature:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode


def _regular(signature: Signature) -> bool:
    return signature is not None and stat.S_ISREG(signature[4])


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """': added x; removed y; new token for z' (names only, never a token), or '' when nothing changed."""
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    replaced = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    parts = [f"{what} {', '.join(names)}" for what, names in (("added", added), ("removed", removed)) if names]
    parts += [f"new token for {', '.join(replaced)}"] if replaced else []
    return f": {'; '.join(parts)}" if parts else ""
