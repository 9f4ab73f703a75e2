"""aiomysql against MariaDB: a pool, bulk inserts, cursors, rollback, a cancelled query."""

from __future__ import annotations

import asyncio

import _harness
import pytest

aiomysql = pytest.importorskip("aiomysql")

N = 2000


def conn_kw(address: tuple[str, int]) -> dict[str, object]:
    host, port = address
    return {"host": host, "port": port, "user": "root", "password": "", "db": "test"}


async def scenario_queries(address: tuple[str, int]) -> None:
    table = _harness.unique("ta_my")
    pool = await aiomysql.create_pool(minsize=1, maxsize=4, autocommit=False, **conn_kw(address))
    try:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(64)) ENGINE=InnoDB"
            )
            await cur.executemany(
                f"INSERT INTO {table} (id, name) VALUES (%s, %s)",
                [(i, f"row {i}") for i in range(N)],
            )
            await conn.commit()
            await cur.execute(f"SELECT COUNT(*), SUM(id) FROM {table}")
            assert await cur.fetchone() == (N, sum(range(N)))

            # Rollback.
            await cur.execute(f"DELETE FROM {table}")
            await conn.rollback()
            await cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert (await cur.fetchone())[0] == N

            # A server error leaves the connection usable.
            with pytest.raises(aiomysql.IntegrityError):
                await cur.execute(f"INSERT INTO {table} VALUES (0, 'dup')")
            await conn.rollback()

        # An unbuffered (streaming) cursor and a dict cursor.
        async with pool.acquire() as conn:
            async with conn.cursor(aiomysql.SSCursor) as cur:
                await cur.execute(f"SELECT id FROM {table} ORDER BY id")
                seen = 0
                while rows := await cur.fetchmany(500):
                    assert [r[0] for r in rows] == list(range(seen, seen + len(rows)))
                    seen += len(rows)
                assert seen == N
            async with conn.cursor(aiomysql.DictCursor) as cur:
                await cur.execute(f"SELECT id, name FROM {table} WHERE id = %s", (7,))
                assert await cur.fetchone() == {"id": 7, "name": "row 7"}
            # End the read transaction: its metadata lock would block DROP TABLE
            # on another connection (aiomysql's pool does not see read-only
            # transactions when the connection is released).
            await conn.commit()

        # More concurrent queries than connections.
        async def query(i: int) -> int:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT %s * 2, SLEEP(0.01)", (i,))
                return (await cur.fetchone())[0]

        assert await asyncio.gather(*(query(i) for i in range(16))) == [i * 2 for i in range(16)]
    finally:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {table}")
        pool.close()
        await pool.wait_closed()


async def execute_one(pool, sql: str) -> tuple:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(sql)
        return await cur.fetchone()


def test_queries(run, mariadb) -> None:
    run(scenario_queries, mariadb)


def test_trio_cancels_query(mariadb) -> None:
    """``SELECT SLEEP(30)`` cancelled by a Trio timeout; the pool is usable afterwards."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        pool = await aio_as_trio(aiomysql.create_pool)(
            minsize=1, maxsize=2, autocommit=True, **conn_kw(mariadb)
        )
        marker = _harness.unique("sleep")
        try:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(execute_one)(pool, f"SELECT SLEEP(30) AS {marker}")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                assert await aio_as_trio(execute_one)(pool, "SELECT 1") == (1,)
                # Stop the abandoned query on the server.
                running = await aio_as_trio(execute_one)(
                    pool,
                    f"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {marker}'",
                )
                if running:
                    await aio_as_trio(execute_one)(pool, f"KILL QUERY {running[0]}")
        finally:
            pool.close()
            await aio_as_trio(pool.wait_closed)()

    _harness.run_trio(main)


def all_modes() -> None:
    _harness.run_all_modes(scenario_queries, _harness.service_address("mariadb"))


def test_imported_first(mariadb) -> None:
    _harness.check_imported_first("aiomysql", "test_aiomysql", "all_modes")
