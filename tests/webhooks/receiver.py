"""A webhook receiver on loopback for tests and benchmarks: a tiny HTTP/1.1 server recording every POST, whose
answer per path is chosen by the test (a status, a delay, a hold until released)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


Behaviour = Callable[[Received], Awaitable[int]]


def answer(status: int = 200) -> Behaviour:
    async def behave(_received: Received) -> int:
        return status

    return behave


def failing_first(times: int, status: int = 500) -> Behaviour:
    """Answers `status` to the first `times` requests, 200 afterwards."""
    seen = 0

    async def behave(_received: Received) -> int:
        nonlocal seen
        seen += 1
        return status if seen <= times else 200

    return behave


def slow_first(times: int, seconds: float) -> Behaviour:
    """Keeps the first `times` requests waiting `seconds` before answering 200."""
    seen = 0

    async def behave(_received: Received) -> int:
        nonlocal seen
        seen += 1
        if seen <= times:
            await asyncio.sleep(seconds)
        return 200

    return behave


def slow(seconds: float) -> Behaviour:
    async def behave(_received: Received) -> int:
        await asyncio.sleep(seconds)
        return 200

    return behave


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.connections):
                writer.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _answer(self, reader: asyncio.StreamReader, path: str, received: Received) -> int | None:
        """The behaviour's status, or None when the sender hangs up first (its request is then no longer in
        flight, though the behaviour may still be waiting)."""
        behaviour = asyncio.ensure_future(self.behaviours.get(path, answer())(received))
        hang_up = asyncio.ensure_future(reader.read(1))
        done, _ = await asyncio.wait({behaviour, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        if behaviour in done:
            hang_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hang_up
            return behaviour.result()
        behaviour.cancel()
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(path, headers, body)
                self.received.append(received)
                self.in_flight[path] = self.in_flight.get(path, 0) + 1
                self.most_in_flight[path] = max(self.most_in_flight.get(path, 0), self.in_flight[path])
                try:
                    status = await self._answer(reader, path, received)
                finally:
                    self.in_flight[path] -= 1
                if status is None:
                    return  # the sender gave up and closed the connection
                writer.write(f"HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                asyncio.CancelledError):
            pass  # the sender went away, sent nonsense, or the receiver is stopping
        finally:
            self.connections.discard(writer)
            writer.close()
