"""bankgate's MCP server: banking tools over a durable ledger, gated by the policy layer."""
