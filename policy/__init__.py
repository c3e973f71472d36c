"""bankgate's policy layer: rules, the human-approval protocol and the audit chain."""
