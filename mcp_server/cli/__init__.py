"""`bankgate-mcp`: the argument parser and entry point (`main`), the non-serving commands
(`admin`: policy, audit and ledger administration) and `policy explain` (`explain`)."""
