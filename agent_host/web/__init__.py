"""The host's web front end: an AG-UI server whose approvals are protocol interrupts, and its page.

`app` is the Starlette application (endpoint, page, capabilities), `guard` its Host/Origin/token
checks, `runs` drives one Foundry conversation per AG-UI thread, `interrupts` holds the approval
questions waiting for a resume, and `static/` is the browser chat (no build step).
"""
