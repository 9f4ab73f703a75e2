"""asyncpg (an asyncio PostgreSQL driver) used from a Trio program.

Shows queries, a transaction and a cursor used as asyncio async context
managers and iterators from Trio, a connection pool shared by concurrent
Trio tasks, and a Trio timeout cancelling a running query.

The database is ``postgresql://postgres@127.0.0.1:5432/test`` unless the
environment variable ``TRIO_ASYNCIO_PG_DSN`` says otherwise. Run it with
``python examples/asyncpg_from_trio.py`` (needs ``pip install asyncpg``).
Exit status 2 means the database could not be reached.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import trio

import trio_asyncio
from trio_asyncio import aio_as_trio

DSN = os.environ.get("TRIO_ASYNCIO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
UNREACHABLE = 2


async def use_one_connection(conn: asyncpg.Connection) -> None:
    version = await aio_as_trio(conn.fetchval)("SHOW server_version")
    print(f"connected: PostgreSQL {version}")

    # A transaction is an asyncio async context manager: aio_as_trio enters it.
    async with aio_as_trio(conn.transaction()):
        await aio_as_trio(conn.execute)(
            "CREATE TEMPORARY TABLE fruit (name text PRIMARY KEY, price numeric)"
        )
        await aio_as_trio(conn.executemany)(
            "INSERT INTO fruit VALUES ($1, $2)",
            [("apple", 0.5), ("banana", 0.25), ("cherry", 3)],
        )

        # A cursor (it needs a transaction) is an asyncio async iterator.
        cursor = conn.cursor("SELECT name, price FROM fruit ORDER BY name")
        async for record in aio_as_trio(cursor):
            print(f"row: {record['name']} costs {record['price']}")

    # A Trio timeout cancels the asyncio query; asyncpg then cancels it on
    # the server, and the connection stays usable.
    with trio.move_on_after(0.2) as scope:
        await aio_as_trio(conn.execute)("SELECT pg_sleep(30)")
    print(f"timeout: the slow query was cancelled: {scope.cancelled_caught}")
    print(f"after the timeout: SELECT 1 gives {await aio_as_trio(conn.fetchval)('SELECT 1')}")


async def use_a_pool() -> None:
    async with aio_as_trio(asyncpg.create_pool)(DSN, min_size=1, max_size=3) as pool:
        results: dict[int, int] = {}

        async def query(n: int) -> None:  # a Trio task
            results[n] = await aio_as_trio(pool.fetchval)("SELECT $1::int * 10", n)

        async with trio.open_nursery() as nursery:
            for n in range(1, 6):
                nursery.start_soon(query, n)
        print(f"pool: five concurrent Trio tasks got {[results[n] for n in sorted(results)]}")


async def main() -> int:
    async with trio_asyncio.open_loop():
        try:
            conn = await aio_as_trio(asyncpg.connect)(DSN, timeout=10)
        except (OSError, asyncio.TimeoutError) as exc:
            print(f"cannot reach PostgreSQL at {DSN}: {exc!r}", file=sys.stderr)
            return UNREACHABLE
        try:
            await use_one_connection(conn)
        finally:
            await aio_as_trio(conn.close)()
        await use_a_pool()
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
