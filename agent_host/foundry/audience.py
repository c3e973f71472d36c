"""Whom a Foundry token is for: the audience project endpoints accept and the scope that asks for it."""

AUDIENCE = "https://ai.azure.com"
"""The audience Foundry project endpoints accept."""

SCOPE = AUDIENCE + "/.default"
"""The scope a credential is asked for to call a project."""
