"""The Foundry side of the host: project access and sign-in, agent versions, the two Responses API
transports (azure-ai-projects SDK and raw REST), reading their responses, and the function tools."""
