"""An inline wait for a human ends at its deadline or when the server stops, and says which (`Waits.hold`).

The round answers the two differently: a deadline settles the approval `expired`; a stop answers that the server
is restarting and leaves it pending. One scope ends the wait both ways, so `stopped` must tell them apart.
"""

import anyio
import pytest

from policy.mcp.waits import Waits

pytestmark = pytest.mark.anyio


async def test_the_deadline_ends_a_wait_that_is_not_stopped() -> None:
    waits = Waits()
    began = anyio.current_time()
    with waits.hold(0.05) as wait:
        await anyio.sleep(10)
    assert anyio.current_time() - began < 5
    assert not wait.stopped


async def test_a_stop_ends_a_wait_before_its_deadline_and_one_begun_after_it_at_once() -> None:
    waits = Waits()
    ended: list[bool] = []

    async def waiting() -> None:
        with waits.hold(60) as wait:
            await anyio.sleep(60)
        ended.append(wait.stopped)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(waiting)
        await anyio.wait_all_tasks_blocked()
        waits.stop()
    with waits.hold(60) as late:
        await anyio.sleep(60)
    assert ended == [True] and late.stopped


async def test_a_wait_whose_work_ends_first_is_neither() -> None:
    waits = Waits()
    with waits.hold(60) as wait:
        await anyio.sleep(0)
    waits.stop()
    assert not wait.stopped
