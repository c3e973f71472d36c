"""Files whose content grants authority (a policy, an issuer's signing keys): whoever may write one grants it, so a
file its group or others may write is refused. Read access is no matter: neither holds a secret."""

import stat


def other_writers(mode: int) -> str | None:
    """Who besides its owner may write a file of `mode`, with the mode, as a refusal names it; None: only its owner."""
    for bits, who in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others")):
        if mode & bits:
            return f"{who} may write it (mode {oct(stat.S_IMODE(mode))})"
    return None
