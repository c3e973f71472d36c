"""Several statements to PostgreSQL in one round trip, handed to libpq together and flushed once.

psycopg's pipeline mode runs a communication step for each `Cursor.execute` in it: a `wait` on the
connection that polls the socket and flushes libpq's buffer, so every statement costs a `poll` and a
`sendto` of the event loop's thread, and some 10 Python calls. A gated transfer sent 21 statements in 5
round trips so: 31 waits, 50 `poll`s and 26 `sendto`s. Here each statement goes through the cursor's own
steps of `execute` (`_start_query`, `_convert_query`, `_maybe_prepare_gen`: the transaction's start if the
driver owes one, parameters adapted, prepared statements kept) except the communication step, its commands
are handed to libpq, which buffers them, and the pipeline's end sends them all with its sync and gives each
result to its cursor: the waits of a round trip no longer grow with its statements.

This leans on those psycopg internals (3.3; `pyproject.toml` pins it below 3.4); the tests of queued writes
and reads ahead pin the behaviour they give: order, results, an error raised at the round trip, the
statements after it skipped and none of them left named prepared.
"""

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg._preparing import PrepareManager
from psycopg.abc import PQGen

Sent = tuple[psycopg.Cursor[Any], str, dict[str, Any]]
"""A statement of a round trip: the cursor its result goes to, its driver SQL and arguments."""


def send_together(driver: psycopg.Connection[Any], statements: Sequence[Sent]) -> None:
    """Run `statements` in order, in one round trip; each cursor then holds the result of its last statement.
    The first error among them is raised here (the server skipped those after it)."""
    prepared = driver._prepared
    named_from = prepared._prepared_idx
    try:
        with driver.pipeline() as pipeline, driver.lock:  # the lock as `Cursor.execute` takes it
            driver.wait(_handed(driver, statements))
            commands = pipeline.command_queue
            try:
                while commands:  # into libpq's buffer; the pipeline's sync, at its end, flushes them
                    commands[0]()
                    commands.popleft()
            except BaseException:
                _unsent(pipeline)
                raise
    except BaseException:
        _forget_named(prepared, named_from)
        raise


def _handed(driver: psycopg.Connection[Any], statements: Sequence[Sent]) -> PQGen[None]:
    """`Cursor._execute_gen` for each statement, less its communication step; yields only when the driver
    sends a BEGIN of its own (outside autocommit). The prepared statements' upkeep (`maintain_gen`) goes
    first, once: psycopg's pipeline learns of a DEALLOCATE ALL it owes (a ROLLBACK TO SAVEPOINT's result) at
    the end of a round trip, and sent after this trip's statements it would drop one that prepares here."""
    yield from driver._prepared.maintain_gen(driver)
    for cursor, sql, arguments in statements:
        yield from cursor._start_query(sql)
        query = cursor._convert_query(sql, arguments)
        yield from cursor._maybe_prepare_gen(query)
        cursor._last_query = sql


def _forget_named(prepared: PrepareManager, first: int) -> None:
    """Forget the statements psycopg named prepared in a round trip that failed, from its `first` name on.

    psycopg names a statement prepared as it queues its Parse (the run past `prepare_threshold`) and, for one it
    had counted before, never checks that the Parse ran. The server skips it after an earlier statement's error
    (libpq, after one it refused: `_unsent`), and every later run of the statement failed with "prepared
    statement ... does not exist" (26000) until psycopg forgot them all at a ROLLBACK: never in autocommit (reads,
    reads ahead), not at a ROLLBACK TO SAVEPOINT. Forgotten, it is counted and prepared afresh under a new name.
    One whose Parse did run stays on the server, unused, until the session ends or psycopg deallocates all (as
    psycopg leaves one whose run failed): deallocating costs a statement, which an aborted transaction refuses."""
    if prepared._prepared_idx == first:
        return
    named = {f"_pg3_{index}".encode() for index in range(first, prepared._prepared_idx)}  # `PrepareManager.get`'s
    for key in [key for key, name in prepared._names.items() if name in named]:
        del prepared._names[key]


def _unsent(pipeline: psycopg.Pipeline) -> None:
    """Drop the commands libpq did not take, and the results they would have given: the pipeline's exit would
    send them, so a COMMIT after a statement libpq refused (too many parameters, say) would commit the rest.
    psycopg's own pipeline never queued the statements after the one that failed."""
    results = pipeline.result_queue
    for _ in pipeline.command_queue:  # each command has one result, queued with it, in order
        results.pop()
    pipeline.command_queue.clear()
