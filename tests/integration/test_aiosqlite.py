"""aiosqlite: a database driven from its own thread."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

import _harness
import pytest

aiosqlite = pytest.importorskip("aiosqlite")

N = 5000

#: A query that runs for many seconds unless interrupted.
SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


class Boom(Exception):
    pass


async def scenario_queries(directory: Path) -> None:
    path = directory / "test.sqlite"
    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        await db.executemany(
            "INSERT INTO items VALUES (?, ?, ?)", [(i, f"item {i}", i * 1.5) for i in range(N)]
        )
        await db.commit()

        async with db.execute("SELECT count(*), sum(id) FROM items") as cursor:
            assert await cursor.fetchone() == (N, sum(range(N)))

        # Iterating a cursor.
        seen = 0
        async with db.execute("SELECT id FROM items ORDER BY id") as cursor:
            async for (row_id,) in cursor:
                assert row_id == seen
                seen += 1
        assert seen == N

        # Row factory and execute_insert.
        db.row_factory = aiosqlite.Row
        row = await db.execute_insert("INSERT INTO items VALUES (?, ?, ?)", (N, "last", 0.0))
        assert row[0] == N
        async with db.execute("SELECT name FROM items WHERE id = ?", (N,)) as cursor:
            assert (await cursor.fetchone())["name"] == "last"
        await db.commit()

        # Rollback.
        await db.execute("DELETE FROM items")
        assert db.in_transaction
        await db.rollback()
        assert (await db.execute_fetchall("SELECT count(*) FROM items"))[0][0] == N + 1

        # Errors cross from the thread.
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute("INSERT INTO items VALUES (0, 'dup', 0)")
        await db.rollback()

        # Concurrent calls are serialized on the connection's thread.
        results = await asyncio.gather(
            *(db.execute_fetchall("SELECT ? * 2", (i,)) for i in range(50))
        )
        assert [r[0][0] for r in results] == [i * 2 for i in range(50)]

    # A second connection sees the committed data.
    async with aiosqlite.connect(path) as db:
        assert (await db.execute_fetchall("SELECT count(*) FROM items"))[0][0] == N + 1


def test_queries(run, tmp_path: Path) -> None:
    run(scenario_queries, tmp_path)


def test_trio_cancels_query(tmp_path: Path) -> None:
    """A long query cancelled by a Trio timeout, then interrupted; the connection still works."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        db = await aio_as_trio(aiosqlite.connect)(tmp_path / "cancel.sqlite")
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(db.execute_fetchall)(SLOW_QUERY)
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                # The query is still running in aiosqlite's thread: stop it.
                await aio_as_trio(db.interrupt)()
                assert await aio_as_trio(db.execute_fetchall)("SELECT 42") == [(42,)]
        finally:
            await aio_as_trio(db.close)()

    _harness.run_trio(main)


def all_modes() -> None:
    for runner in _harness.all_runners():
        with tempfile.TemporaryDirectory() as directory:
            runner(scenario_queries, Path(directory))


def test_imported_first() -> None:
    _harness.check_imported_first("aiosqlite", "test_aiosqlite", "all_modes")
