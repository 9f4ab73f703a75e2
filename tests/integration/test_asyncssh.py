"""asyncssh: a server and a client on one loop, with keys made at test time; exec and SFTP."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import _harness
import pytest

asyncssh = pytest.importorskip("asyncssh")

USER = "tester"


async def handle_process(process: asyncssh.SSHServerProcess) -> None:
    command = process.command or ""
    if command == "upper":
        data = await process.stdin.read()
        process.stdout.write(data.upper())
        process.exit(0)
    elif command.startswith("fail "):
        process.stderr.write("something went wrong\n")
        process.exit(int(command.split()[1]))
    elif command == "wait-for-eof":
        await process.stdin.read()
        process.exit(0)
    else:
        process.stderr.write(f"unknown command {command!r}\n")
        process.exit(127)


@asynccontextmanager
async def ssh_pair(root: Path) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An SSH server (exec and a chrooted SFTP) and a client connected to it."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())

    class ChrootSFTPServer(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
            super().__init__(chan, chroot=str(root))

    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        process_factory=handle_process,
        sftp_factory=ChrootSFTPServer,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username=USER,
            client_keys=[client_key],
            known_hosts=([host_key.convert_to_public()], [], []),
        ) as conn:
            yield conn
    finally:
        server.close()
        await server.wait_closed()


async def scenario_ssh(directory: Path) -> None:
    root = directory / "sftp-root"
    root.mkdir()
    local = directory / "local"
    local.mkdir()
    async with ssh_pair(root) as conn:
        # exec, with stdin, stdout, stderr and exit status.
        result = await conn.run("upper", input="hello over ssh")
        assert (result.stdout, result.exit_status) == ("HELLO OVER SSH", 0)
        result = await conn.run("fail 3")
        assert (result.exit_status, result.stderr) == (3, "something went wrong\n")
        with pytest.raises(asyncssh.ProcessError):
            await conn.run("fail 4", check=True)
        # Several channels at once on one connection.
        results = await asyncio.gather(*(conn.run("upper", input=f"n{i}") for i in range(8)))
        assert [r.stdout for r in results] == [f"N{i}" for i in range(8)]

        # SFTP: write, upload, list, stat, download, rename, remove.
        blob = bytes(range(256)) * 4096 * 2  # 2 MiB
        (local / "up.bin").write_bytes(blob)
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("note.txt", "w") as f:
                await f.write("written over sftp\n")
            await sftp.mkdir("dir")
            await sftp.put(str(local / "up.bin"), "dir/up.bin")
            assert sorted(await sftp.listdir("dir")) == [".", "..", "up.bin"]
            assert (await sftp.stat("dir/up.bin")).size == len(blob)
            await sftp.get("dir/up.bin", str(local / "down.bin"))
            await sftp.rename("note.txt", "dir/note.txt")
            async with sftp.open("dir/note.txt") as f:
                assert await f.read() == "written over sftp\n"
            await sftp.remove("dir/note.txt")
            assert not await sftp.exists("dir/note.txt")
        assert (root / "dir" / "up.bin").read_bytes() == blob
        assert (
            hashlib.sha256((local / "down.bin").read_bytes()).digest()
            == hashlib.sha256(blob).digest()
        )


def test_ssh(run, tmp_path: Path) -> None:
    run(scenario_ssh, tmp_path)


def test_trio_cancels_exec(tmp_path: Path) -> None:
    """A remote command cancelled by a Trio timeout; the connection still works."""
    import trio

    from trio_asyncio import aio_as_trio

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        async with aio_as_trio(ssh_pair(tmp_path)) as conn:
            with trio.move_on_after(0.3) as timeout:
                await aio_as_trio(conn.run)("wait-for-eof")
            assert timeout.cancelled_caught
            with trio.fail_after(10):
                result = await aio_as_trio(conn.run)("upper", input="still here")
            assert result.stdout == "STILL HERE"

    _harness.run_trio(main)


def all_modes() -> None:
    for runner in _harness.all_runners():
        with tempfile.TemporaryDirectory() as directory:
            runner(scenario_ssh, Path(directory))


def test_imported_first() -> None:
    _harness.check_imported_first("asyncssh", "test_asyncssh", "all_modes")
