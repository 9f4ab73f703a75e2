"""psycopg 3 in async mode against PostgreSQL."""

from __future__ import annotations

import asyncio

import _harness
import pytest

psycopg = pytest.importorskip("psycopg")

N = 10_000


def conninfo(address: tuple[str, int]) -> str:
    host, port = address
    return f"host={host} port={port} user=postgres dbname=test connect_timeout=10"


class Boom(Exception):
    pass


async def scenario_queries(address: tuple[str, int]) -> None:
    table = _harness.unique("ta_psy")
    channel = _harness.unique("ta_psy_chan")
    conn = await psycopg.AsyncConnection.connect(conninfo(address))
    listener = await psycopg.AsyncConnection.connect(conninfo(address), autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
            # executemany (pipelined by psycopg).
            await cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"row {i}") for i in range(1000)]
            )
            # COPY 10k rows.
            async with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
                for i in range(1000, 1000 + N):
                    await copy.write_row((i, f"copy {i}"))
            await conn.commit()
            await cur.execute(f"SELECT count(*), sum(id) FROM {table}")
            assert await cur.fetchone() == (N + 1000, sum(range(N + 1000)))
            # COPY out.
            rows = []
            async with cur.copy(
                f"COPY (SELECT id FROM {table} WHERE id < 3 ORDER BY id) TO STDOUT"
            ) as copy:
                async for row in copy.rows():
                    rows.append(row)
            assert rows == [("0",), ("1",), ("2",)]

        # A server-side cursor.
        async with conn.transaction(), conn.cursor(name="ta_cursor") as named:
            named.itersize = 700
            await named.execute(f"SELECT id FROM {table} ORDER BY id")
            seen = 0
            async for (row_id,) in named:
                assert row_id == seen
                seen += 1
            assert seen == N + 1000

        # Pipeline mode.
        async with conn.pipeline():
            cursors = [await conn.execute("SELECT %s::int * 3", (i,)) for i in range(10)]
        assert [(await c.fetchone())[0] for c in cursors] == [i * 3 for i in range(10)]
        await conn.commit()

        # Rollback.
        with pytest.raises(Boom):
            async with conn.transaction():
                await conn.execute(f"DELETE FROM {table}")
                raise Boom
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        assert (await cur.fetchone())[0] == N + 1000
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(f"INSERT INTO {table} VALUES (0, 'dup')")
        await conn.rollback()

        # LISTEN/NOTIFY.
        await listener.execute(f"LISTEN {channel}")
        for i in range(3):
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, f"n{i}"))
        await conn.commit()
        got = [n.payload async for n in listener.notifies(timeout=10, stop_after=3)]
        assert got == ["n0", "n1", "n2"]
    finally:
        await conn.rollback()
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.commit()
        await conn.close()
        await listener.close()


def test_queries(run, postgres) -> None:
    run(scenario_queries, postgres)


def test_trio_cancels_query(postgres) -> None:
    """``pg_sleep`` cancelled by a Trio timeout; the connection is usable afterwards."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        conn = await aio_as_trio(psycopg.AsyncConnection.connect)(
            conninfo(postgres), autocommit=True
        )
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(conn.execute)("SELECT pg_sleep(30)")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                cur = await aio_as_trio(conn.execute)("SELECT 1")
                assert await aio_as_trio(cur.fetchone)() == (1,)
        finally:
            await aio_as_trio(conn.close)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_queries, _harness.service_address("postgres"))


def test_imported_first(postgres) -> None:
    _harness.check_imported_first("psycopg", "test_psycopg", "all_modes")
