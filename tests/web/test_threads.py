"""How many AG-UI threads the host keeps: a client naming a new thread id per run must not grow it without end."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest
from ag_ui.core import RunAgentInput

from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import MAX_THREAD_ID, RunDriver, ThreadRun

from .helpers import run_input

pytestmark = pytest.mark.anyio


class Echo:
    """A conversation that answers at once, or, for a text of "wait", when `release` is set."""

    def __init__(self, thread: ThreadRun, release: anyio.Event, sent: list[tuple[str, str]]) -> None:
        self.thread, self.release, self.sent = thread, release, sent

    async def send(self, text: str) -> None:
        self.sent.append((self.thread.thread_id, text))
        if text == "wait":
            await self.release.wait()


async def events(driver: RunDriver, thread: str, text: str | None) -> list[Any]:
    return [event async for event in driver.run(RunAgentInput.model_validate(run_input(thread, text)))]


async def test_the_least_recently_used_idle_thread_is_forgotten_past_the_limit() -> None:
    release, sent = anyio.Event(), list[tuple[str, str]]()
    driver = RunDriver(InterruptStore(5.0), max_threads=3)
    async with anyio.create_task_group() as tasks:
        driver.bind(lambda thread: Echo(thread, release, sent), tasks)  # type: ignore[arg-type, return-value]
        for thread in ("a", "b", "c", "a", "d"):  # "b" is then the least recently used
            assert (await events(driver, thread, "hi"))[-1].type == "RUN_FINISHED"
        assert list(driver._threads) == ["c", "a", "d"]
        first = driver._threads["a"].conversation
        assert (await events(driver, "a", "again"))[-1].type == "RUN_FINISHED"
        assert driver._threads["a"].conversation is first, "a thread kept goes on with its conversation"


async def test_a_thread_with_a_run_in_progress_is_never_forgotten_and_a_new_one_is_refused() -> None:
    release, sent = anyio.Event(), list[tuple[str, str]]()
    driver = RunDriver(InterruptStore(5.0), max_threads=2)
    async with anyio.create_task_group() as tasks:
        driver.bind(lambda thread: Echo(thread, release, sent), tasks)  # type: ignore[arg-type, return-value]
        busy = [await _started(driver, tasks, thread) for thread in ("a", "b")]
        refused = await events(driver, "c", "hi")
        assert refused[-1].type == "RUN_ERROR" and refused[-1].code == "too_many_threads"
        assert ("c", "hi") not in sent and list(driver._threads) == ["a", "b"]
        release.set()
        with anyio.fail_after(5):
            while any(thread.active for thread in busy):
                await anyio.sleep(0.01)
        assert (await events(driver, "c", "hi"))[-1].type == "RUN_FINISHED"
        assert list(driver._threads) == ["b", "c"]


async def _started(driver: RunDriver, tasks: anyio.abc.TaskGroup, thread_id: str) -> ThreadRun:
    """A run on `thread_id` that waits for `release`, under way."""
    tasks.start_soon(events, driver, thread_id, "wait")
    with anyio.fail_after(5):
        while not (thread_id in driver._threads and driver._threads[thread_id].active):
            await anyio.sleep(0.01)
    return driver._threads[thread_id]


class Broken:
    """A conversation with a bug: every run fails unexpectedly."""

    def __init__(self, thread: ThreadRun) -> None:
        self.thread = thread

    async def send(self, text: str) -> None:
        raise RuntimeError("bug")


async def test_a_failed_run_is_logged_with_its_thread_id_quoted(caplog: pytest.LogCaptureFixture) -> None:
    """The thread id is the client's text: a line break in it must not write a line of its own in the log."""
    driver = RunDriver(InterruptStore(5.0))
    forged = "t1\n2026-12-05 04:00:00,000 INFO bankgate: approval APR-0000000001 approved"
    async with anyio.create_task_group() as tasks:
        driver.bind(Broken, tasks)  # type: ignore[arg-type]
        assert (await events(driver, forged, "hi"))[-1].code == "internal_error"
        tasks.cancel_scope.cancel()
    (record,) = [r for r in caplog.records if r.name == "agent_host.web.runs"]
    assert "\n" not in record.getMessage() and record.exc_info is not None


async def test_a_refused_run_takes_no_threads_place() -> None:
    # A run refused for its input (no message to send, a thread id too long to keep) changes nothing: it made a
    # thread first, which past the limit made the host forget another thread's conversation; and it kept an id of
    # up to the body's megabyte, a thousand of them a gigabyte.
    release, sent = anyio.Event(), list[tuple[str, str]]()
    driver = RunDriver(InterruptStore(5.0), max_threads=2)
    async with anyio.create_task_group() as tasks:
        driver.bind(lambda thread: Echo(thread, release, sent), tasks)  # type: ignore[arg-type, return-value]
        for thread in ("a", "b"):
            assert (await events(driver, thread, "hi"))[-1].type == "RUN_FINISHED"
        empty = await events(driver, "c", None)
        assert empty[-1].type == "RUN_ERROR" and empty[-1].code == "no_user_message"
        assert list(driver._threads) == ["a", "b"], "no thread was forgotten for a refused run"
        long = await events(driver, "t" * (MAX_THREAD_ID + 1), "hi")
        assert long[-1].type == "RUN_ERROR" and long[-1].code == "invalid_thread_id", long[-1]
        assert str(MAX_THREAD_ID) in long[-1].message and list(driver._threads) == ["a", "b"]
        assert (await events(driver, "t" * MAX_THREAD_ID, "hi"))[-1].type == "RUN_FINISHED"
