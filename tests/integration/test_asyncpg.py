"""asyncpg against PostgreSQL: bulk loads, cursors, a pool, LISTEN/NOTIFY, rollback, cancel."""

from __future__ import annotations

import asyncio
import io

import _harness
import pytest

asyncpg = pytest.importorskip("asyncpg")

N = 10_000


def conn_kw(address: tuple[str, int]) -> dict[str, object]:
    host, port = address
    return {"host": host, "port": port, "user": "postgres", "database": "test"}


class Boom(Exception):
    pass


async def scenario_bulk(address: tuple[str, int]) -> None:
    table = _harness.unique("ta_pg")
    conn = await asyncpg.connect(**conn_kw(address))
    try:
        await conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL, value float8)"
        )
        # executemany, 10k rows.
        await conn.executemany(
            f"INSERT INTO {table} VALUES ($1, $2, $3)",
            [(i, f"row {i}", i / 2) for i in range(N)],
        )
        # COPY, 10k more rows.
        result = await conn.copy_records_to_table(
            table, records=[(i, f"copy {i}", None) for i in range(N, 2 * N)]
        )
        assert result == f"COPY {N}"
        row = await conn.fetchrow(f"SELECT count(*), sum(id), sum(value) FROM {table}")
        assert tuple(row) == (2 * N, (2 * N - 1) * 2 * N // 2, sum(i / 2 for i in range(N)))

        # COPY out.
        out = io.BytesIO()
        await conn.copy_from_query(f"SELECT id FROM {table} WHERE id < 5 ORDER BY id", output=out)
        assert out.getvalue() == b"0\n1\n2\n3\n4\n"

        # Cursors live in a transaction.
        async with conn.transaction():
            seen = 0
            async for record in conn.cursor(f"SELECT id FROM {table} ORDER BY id", prefetch=700):
                assert record["id"] == seen
                seen += 1
            assert seen == 2 * N
            cursor = await conn.cursor(f"SELECT id FROM {table} ORDER BY id")
            await cursor.forward(100)
            assert [r["id"] for r in await cursor.fetch(3)] == [100, 101, 102]

        # Rollback: of a transaction, and of a savepoint only.
        with pytest.raises(Boom):
            async with conn.transaction():
                await conn.execute(f"DELETE FROM {table}")
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
                raise Boom
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2 * N
        async with conn.transaction():
            await conn.execute(f"DELETE FROM {table} WHERE id = 0")
            with pytest.raises(Boom):
                async with conn.transaction():
                    await conn.execute(f"DELETE FROM {table}")
                    raise Boom
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2 * N - 1

        # A server error leaves the connection usable.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"INSERT INTO {table} VALUES (1, 'dup', 0)")
        assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def scenario_pool_notify(address: tuple[str, int]) -> None:
    channel = _harness.unique("ta_chan")
    async with asyncpg.create_pool(min_size=2, max_size=4, **conn_kw(address)) as pool:
        # More concurrent queries than connections.
        results = await asyncio.gather(
            *(pool.fetchval("SELECT $1::int * 2, pg_sleep(0.01)", i) for i in range(24))
        )
        assert results == [i * 2 for i in range(24)]

        received: asyncio.Queue[str] = asyncio.Queue()

        def on_notify(connection: object, pid: int, chan: str, payload: str) -> None:
            assert chan == channel
            received.put_nowait(payload)

        async with pool.acquire() as listener:
            await listener.add_listener(channel, on_notify)
            async with pool.acquire() as sender:
                for i in range(5):
                    await sender.execute("SELECT pg_notify($1, $2)", channel, f"message {i}")
                # Notifications sent in one transaction arrive together, in order.
                async with sender.transaction():
                    await sender.execute(f"NOTIFY {channel}, 'in tx 1'")
                    await sender.execute(f"NOTIFY {channel}, 'in tx 2'")
            got = [await asyncio.wait_for(received.get(), 10) for _ in range(7)]
            assert got == [f"message {i}" for i in range(5)] + ["in tx 1", "in tx 2"]
            await listener.remove_listener(channel, on_notify)


def test_bulk(run, postgres) -> None:
    run(scenario_bulk, postgres)


def test_pool_notify(run, postgres) -> None:
    run(scenario_pool_notify, postgres)


def test_trio_cancels_query(postgres) -> None:
    """``pg_sleep`` cancelled by a Trio timeout; the connection and a pool still work."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        conn = await aio_as_trio(asyncpg.connect)(**conn_kw(postgres))
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(conn.fetchval)("SELECT pg_sleep(30)")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                assert await aio_as_trio(conn.fetchval)("SELECT 1") == 1
                # Cancelled inside a transaction: it can be rolled back and reused.
                tx = conn.transaction()
                await aio_as_trio(tx.start)()
                with trio.move_on_after(0.3) as timeout:
                    await aio_as_trio(conn.fetchval)("SELECT pg_sleep(30)")
                assert timeout.cancelled_caught
                await aio_as_trio(tx.rollback)()
                assert await aio_as_trio(conn.fetchval)("SELECT 2") == 2
        finally:
            await aio_as_trio(conn.close)()

        pool = await aio_as_trio(asyncpg.create_pool)(min_size=1, max_size=1, **conn_kw(postgres))
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(pool.fetchval)("SELECT pg_sleep(30)")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                assert await aio_as_trio(pool.fetchval)("SELECT 3") == 3
        finally:
            await aio_as_trio(pool.close)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_pool_notify, _harness.service_address("postgres"))


def test_imported_first(postgres) -> None:
    _harness.check_imported_first("asyncpg", "test_asyncpg", "all_modes")
