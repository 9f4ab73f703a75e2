"""A legacy asyncio program: one loop, many runs, objects reused across them.

Usage: python legacy_reuse.py [--no-tcp]

It uses the loop the old way (new_event_loop + set_event_loop, several
run_until_complete calls, run_forever/stop) and reuses a Queue, a Lock, an
Event, a UDP endpoint and a TCP server (unless --no-tcp) across the runs. The
transcript it prints is the same on every correct loop; the last line names
the loop.
"""

import asyncio
import sys


def say(*words: object) -> None:
    print(*words, flush=True)


async def produce(queue: asyncio.Queue, items: list) -> None:
    for item in items:
        await queue.put(item)


async def consume(queue: asyncio.Queue, lock: asyncio.Lock, log: list, count: int) -> str:
    for _ in range(count):
        item = await queue.get()
        async with lock:
            log.append(item)
        queue.task_done()
    return "consumed"


async def tcp_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(line.upper())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def ask_tcp(port: int, text: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(text.encode() + b"\n")
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer.decode().strip()


class UdpUpper(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data.upper(), addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self, answer: asyncio.Future) -> None:
        self.answer = answer

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.answer.set_result(data.decode())


async def ask_udp(address: tuple, text: str) -> str:
    loop = asyncio.get_running_loop()
    answer = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpClient(answer), remote_addr=address
    )
    try:
        transport.sendto(text.encode())
        return await answer
    finally:
        transport.close()


def main(use_tcp: bool) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    queue: asyncio.Queue = asyncio.Queue()
    lock = asyncio.Lock()
    event = asyncio.Event()
    log: list = []

    udp_server, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(UdpUpper, local_addr=("127.0.0.1", 0))
    )
    udp_address = udp_server.get_extra_info("sockname")
    if use_tcp:
        tcp_server = loop.run_until_complete(asyncio.start_server(tcp_upper, "127.0.0.1", 0))
        port = tcp_server.sockets[0].getsockname()[1]

    # A consumer task that lives across all the runs below.
    consumer = loop.create_task(consume(queue, lock, log, 6))
    loop.run_until_complete(produce(queue, [1, 2, 3]))
    say("run 1:", log, "consumer done:", consumer.done())
    loop.run_until_complete(produce(queue, [4, 5]))
    say("run 2:", log)

    # The lock is taken in one run and released in another.
    loop.run_until_complete(lock.acquire())
    loop.run_until_complete(queue.put(6))
    say("lock held between runs:", lock.locked(), log)
    loop.call_soon(lock.release)
    loop.run_until_complete(queue.join())
    say("after join:", log, loop.run_until_complete(consumer))

    # run_forever, stopped by a task.
    async def chat_then_stop() -> list:
        answers = [await ask_udp(udp_address, "ping")]
        if use_tcp:
            answers.append(await ask_tcp(port, "hello"))
        event.set()
        loop.stop()
        return answers

    chat = loop.create_task(chat_then_stop())
    loop.run_forever()
    say("run_forever stopped:", chat.result(), "event set:", event.is_set())

    # A waiter started in one run, woken in a later one.
    waiter = loop.create_task(event.wait())
    event.clear()
    loop.run_until_complete(asyncio.sleep(0))
    say("waiter pending:", not waiter.done())
    loop.call_soon(event.set)
    say("waiter woken:", loop.run_until_complete(waiter))

    # The servers still serve in a later run.
    say("later udp:", loop.run_until_complete(ask_udp(udp_address, "still there")))
    if use_tcp:
        say("later tcp:", loop.run_until_complete(ask_tcp(port, "still there")))
        tcp_server.close()
        loop.run_until_complete(tcp_server.wait_closed())
    udp_server.close()
    loop.run_until_complete(loop.shutdown_asyncgens())
    asyncio.set_event_loop(None)
    loop.close()
    say("loop:", type(loop).__name__)


if __name__ == "__main__":
    main(use_tcp="--no-tcp" not in sys.argv[1:])
