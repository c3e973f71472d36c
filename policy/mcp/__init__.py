"""The gate's MCP adapter: the approval round as SDK resolvers, the elicitation form, and the SDK's question digest."""
