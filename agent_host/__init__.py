"""bankgate's agent host: Foundry Responses function calls bridged to the MCP tools."""
