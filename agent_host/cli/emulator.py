"""`bankgate-agent emulator`: serve the offline Foundry emulator on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from typing import get_args

from agent_host.emulator import DEFAULT_PROJECT, Emulator, EmulatorConfig, FaultConfig
from agent_host.emulator.faults import WireShape
from agent_host.emulator.responses import DEFAULT_RUN_LIFETIME_S
from agent_host.foundry.audience import AUDIENCE
from agent_host.foundry.dev_token import DEV_TOKEN
from agent_host.settings import DEFAULT_EMULATOR_MODEL

DEFAULT_PORT = 8780
"""Not 8765, the MCP server's HTTP default: a newcomer runs both side by side."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="project name in the endpoint path")
    parser.add_argument("--token", default=DEV_TOKEN, help="bearer token clients must send")
    faults = parser.add_argument_group("fault injection (off by default)")
    faults.add_argument("--rate-limit", type=int, default=0, metavar="N", help="answer the first N requests 429")
    faults.add_argument("--server-errors", type=int, default=0, metavar="N", help="then answer N requests 500")
    faults.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS", help="Retry-After sent with 429s")
    faults.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="latency added to each request")
    faults.add_argument(
        "--fault-target",
        choices=("all", "agents", "responses"),
        default="all",
        help="which endpoints the faults apply to",
    )
    faults.add_argument(
        "--wire-shape",
        choices=get_args(WireShape),
        default="canonical",
        help="how responses carry function calls (all legal; see docs/foundry-wire-notes.md)",
    )
    parser.add_argument(
        "--run-lifetime",
        type=float,
        default=DEFAULT_RUN_LIFETIME_S,
        metavar="SECONDS",
        help="a response waiting for tool outputs expires this long after creation (Foundry: 600)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        faults = FaultConfig(
            rate_limited=args.rate_limit,
            server_errors=args.server_errors,
            retry_after=args.retry_after,
            delay=args.delay,
            target=args.fault_target,
            shape=args.wire_shape,
        )
        config = EmulatorConfig(
            project=args.project, token=args.token, port=args.port, faults=faults, run_lifetime=args.run_lifetime
        )
        emulator = Emulator(config, log_level="info")
    except ValueError as error:
        print(f"bankgate-agent emulator: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"bankgate-agent emulator: cannot listen on 127.0.0.1:{args.port} ({error.strerror}); "
            "choose another --port, or --port 0 for a free one",
            file=sys.stderr,
        )
        return 1
    print(banner(emulator), flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutting down cleanly
        emulator.serve_forever()
    print("Emulator stopped.", flush=True)
    return 0


def banner(emulator: Emulator) -> str:
    """What to tell the user, as shell text: `export` lines and `#` comments, so it can be pasted
    (or evaluated) whole; python-dotenv reads the `export` lines from a `.env` file too."""
    settings = {
        "PROJECT_ENDPOINT": emulator.endpoint,
        "EMULATOR_TOKEN": emulator.token,
        "CHAT_MODEL": DEFAULT_EMULATOR_MODEL,
    }
    comments = [
        "bankgate Foundry emulator: offline; its model is a rule-based stand-in, not an LLM.",
        "Listening on 127.0.0.1 only. Press Ctrl-C to stop. In another shell, paste:",
    ]
    details = [
        f"Clients send 'Authorization: Bearer <EMULATOR_TOKEN>' (a token for {AUDIENCE}); from Python use",
        "agent_host.foundry.dev_token.DevTokenCredential(token) + LoopbackBearerTokenPolicy for plain-HTTP loopback.",
        "Any CHAT_MODEL name works here; bankgate-agent uses this one against a loopback endpoint by default.",
        f"Faults: {_describe_faults(emulator.config.faults)}",
    ]
    return "\n".join(
        [*(f"# {line}" for line in comments)]
        + [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]
        + [f"# {line}" for line in details]
    )


def _describe_faults(faults: FaultConfig) -> str:
    parts = []
    if faults.rate_limited:
        parts.append(f"first {faults.rate_limited} request(s) get 429 (Retry-After {faults.retry_after:g} s)")
    if faults.server_errors:
        parts.append(f"then {faults.server_errors} get 500")
    if faults.delay:
        parts.append(f"{faults.delay:g} s delay per request")
    if faults.shape != "canonical":
        parts.append(f"function calls sent as {faults.shape}")
    if not parts:
        return "none"
    return "; ".join(parts) + ("" if faults.target == "all" else f" (on {faults.target} endpoints only)")
