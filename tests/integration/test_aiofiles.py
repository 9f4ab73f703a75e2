"""aiofiles: file I/O in executors (the default one, and the user's own)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import threading
from pathlib import Path

import _harness
import pytest

pytest.importorskip("aiofiles")
import aiofiles
import aiofiles.os
import aiofiles.tempfile

LINES = [f"line {i}: {'x' * (i % 50)}\n" for i in range(2000)]


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A user's executor that records which threads ran its jobs."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=2, thread_name_prefix=name)
        self.name = name
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        def job():
            with self._lock:
                self.threads.add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(job)


async def exercise_files(directory: Path, executor: concurrent.futures.Executor | None) -> None:
    path = directory / "data.txt"
    async with aiofiles.open(path, "w", executor=executor) as f:
        await f.writelines(LINES)
        await f.write("the end\n")
    async with aiofiles.open(path, executor=executor) as f:
        assert await f.readline() == LINES[0]
        rest = [line async for line in f]
        assert rest == [*LINES[1:], "the end\n"]
        await f.seek(0)
        assert await f.read() == "".join(LINES) + "the end\n"

    blob = bytes(range(256)) * 4096  # 1 MiB
    async with aiofiles.open(directory / "data.bin", "wb", executor=executor) as f:
        await f.write(blob)
        await f.flush()
    async with aiofiles.open(directory / "data.bin", "rb", executor=executor) as f:
        pieces = []
        while chunk := await f.read(100_000):
            pieces.append(chunk)
    assert b"".join(pieces) == blob

    # Many files at once.
    async def roundtrip(i: int) -> str:
        p = directory / f"many-{i}.txt"
        async with aiofiles.open(p, "w", executor=executor) as f:
            await f.write(str(i))
        async with aiofiles.open(p, executor=executor) as f:
            return await f.read()

    assert await asyncio.gather(*(roundtrip(i) for i in range(30))) == [str(i) for i in range(30)]


async def scenario_files(directory: Path) -> None:
    # The loop's default executor.
    await exercise_files(directory, None)

    # aiofiles.os and aiofiles.tempfile.
    await aiofiles.os.makedirs(directory / "sub" / "dir", exist_ok=True)
    await aiofiles.os.rename(directory / "data.txt", directory / "sub" / "moved.txt")
    assert (await aiofiles.os.stat(directory / "sub" / "moved.txt")).st_size > 0
    assert await aiofiles.os.path.exists(directory / "sub" / "moved.txt")
    assert "moved.txt" in await aiofiles.os.listdir(directory / "sub")
    await aiofiles.os.remove(directory / "sub" / "moved.txt")
    assert not await aiofiles.os.path.exists(directory / "sub" / "moved.txt")
    async with aiofiles.tempfile.NamedTemporaryFile("w+", dir=directory) as tmp:
        await tmp.write("temporary")
        await tmp.seek(0)
        assert await tmp.read() == "temporary"

    # The user's own executor, passed to each call.
    own = CountingExecutor("user-pool")
    try:
        sub = directory / "own"
        sub.mkdir()
        await exercise_files(sub, own)
    finally:
        own.shutdown(wait=True)
    assert own.threads and all(t.startswith("user-pool") for t in own.threads)

    # The user's executor set as the loop's default.
    default = CountingExecutor("loop-default")
    asyncio.get_running_loop().set_default_executor(default)
    sub = directory / "default"
    sub.mkdir()
    await exercise_files(sub, None)
    assert default.threads and all(t.startswith("loop-default") for t in default.threads)


def test_files(run, tmp_path: Path) -> None:
    run(scenario_files, tmp_path)


def all_modes() -> None:
    for runner in _harness.all_runners():
        with tempfile.TemporaryDirectory() as directory:
            runner(scenario_files, Path(directory))


def test_imported_first() -> None:
    _harness.check_imported_first("aiofiles", "test_aiofiles", "all_modes")
