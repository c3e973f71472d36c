"""The oldest releases pyproject.toml lets an installer pick must have what bankgate relies on: an older one installs
without complaint and the promise silently fails (in the safe direction, but unkept)."""

import re
import tomllib
from pathlib import Path

import pytest

NEEDED = {
    "pyjwt": (
        (2, 15),
        "PyJWKClient's lock (verifies run on four threads), its 30 s refetch cooldown on an unknown key id, and a "
        "cache a failed fetch leaves alone (2.14-2.15; GHSA-fhv5-28vv-h8m8 before 2.13)",
    ),
    "uvicorn": (
        (0, 31, 1),
        "networks in forwarded_allow_ips (0.31.0; a name before, matching no client) and ['*'] as 'any' (0.31.1)",
    ),
}


def _floor(name: str) -> tuple[int, ...]:
    dependencies = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in dependencies if re.match(rf"{name}\b", d)]
    found = re.search(r">=\s*([0-9.]+)", spec)
    assert found is not None, spec
    return tuple(int(part) for part in found.group(1).split("."))


@pytest.mark.parametrize("name", sorted(NEEDED))
def test_the_oldest_release_allowed_has_what_bankgate_relies_on(name: str) -> None:
    needed, why = NEEDED[name]
    assert _floor(name) >= needed, f"{name} must be at least {'.'.join(map(str, needed))}: {why}"
