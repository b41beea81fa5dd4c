"""A TCP proxy in front of the broker that the fault tests can turn into a black hole: while it is one, every byte
either way is read and thrown away, so a request sent then never reaches the broker and no answer comes back (what
a network partition does; a frozen broker, by contrast, still appends what its socket buffer holds once it wakes).
Restoring it drops the connections the black hole held, as a partition's end does, and forwards again.

The broker advertises the proxy's address, so every client (the services and the test's own producer) goes through
it, the metadata answers included."""

from __future__ import annotations

import asyncio
import contextlib


class BrokerProxy:
    def __init__(self, listen_port: int, broker_host: str, broker_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.listen_port = host, listen_port
        self.broker_host, self.broker_port = broker_host, broker_port
        self.black_hole = False
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.listen_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def partition(self) -> None:
        """From now on nothing passes, either way, on any connection, old or new."""
        self.black_hole = True

    def heal(self) -> None:
        """The connections the partition held are gone; new ones are forwarded again."""
        self._drop_connections()
        self.black_hole = False

    def _drop_connections(self) -> None:
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(self.broker_host, self.broker_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._connections.update((client_writer, broker_writer))
        pumps = [asyncio.ensure_future(self._pump(client_reader, broker_writer)),
                 asyncio.ensure_future(self._pump(broker_reader, client_writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, broker_writer):
                writer.transport.abort()
                self._connections.discard(writer)
            self._tasks.difference_update(pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if self.black_hole:
                continue
            writer.write(data)
            await writer.drain()
