"""Delivery-time lookups: one per host at a time, shared, on threads of their own, so a host whose DNS hangs holds
one thread and no other delivery waits for it."""

from __future__ import annotations

import asyncio
import threading

from services.webhooks.usecases import Resolver


async def test_lookups_of_one_host_are_shared_and_a_hanging_one_delays_no_other_host() -> None:
    calls: list[str] = []
    hanging = threading.Event()

    def blocking(host: str, port: int) -> list[str]:
        calls.append(host)
        if host == "hangs.example.com":
            hanging.wait(30)
        return ["93.184.216.34"]

    resolver = Resolver(threads=2, blocking=blocking)
    try:
        waiting = [asyncio.ensure_future(resolver("hangs.example.com", 443)) for _ in range(4)]
        await asyncio.sleep(0.05)
        # Four deliveries to the hanging host hold one thread between them: another host resolves at once.
        assert await asyncio.wait_for(resolver("fine.example.com", 443), 5) == ["93.184.216.34"]
        waiting[0].cancel()  # one giving up (its timeout) leaves the lookup to the others
        hanging.set()
        answers = await asyncio.gather(*waiting[1:])
        assert answers == [["93.184.216.34"]] * 3
        assert calls.count("hangs.example.com") == 1 and calls.count("fine.example.com") == 1
    finally:
        hanging.set()
        resolver.close()


async def test_a_failed_lookup_reaches_every_delivery_waiting_for_it() -> None:
    def blocking(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    resolver = Resolver(threads=1, blocking=blocking)
    try:
        results = await asyncio.gather(resolver("nx.example.com", 443), resolver("nx.example.com", 443),
                                       return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
    finally:
        resolver.close()
