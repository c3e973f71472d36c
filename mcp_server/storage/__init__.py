"""Where the server keeps what outlives a call: the gate's approvals, keys and audit on the ledger database."""
