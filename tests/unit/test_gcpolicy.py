"""The cyclic collector runs on a clock while a service runs, and automatically again once none does."""

from __future__ import annotations

import asyncio
import gc
import weakref

from partnerhub import gcpolicy
from partnerhub.gcpolicy import ScheduledCollection


async def test_collection_is_scheduled_while_any_service_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(gcpolicy, "YOUNG_EVERY_SECONDS", 0.01)
    monkeypatch.setattr(gcpolicy, "_holders", 0)  # whatever services of other tests still hold
    collected: list[int] = []
    gc.callbacks.append(lambda phase, info: collected.append(info["generation"]) if phase == "stop" else None)
    try:
        first, second = ScheduledCollection(), ScheduledCollection()
        first.start()
        second.start()
        assert not gc.isenabled()
        await asyncio.sleep(0.2)
        assert collected, "the scheduled task collected nothing"
        await first.stop()
        assert not gc.isenabled(), "another service still runs: automatic collection stays off"
        await second.stop()
        assert gc.isenabled()
    finally:
        gc.callbacks.pop()
        gc.enable()


async def test_cyclic_garbage_is_freed_by_the_schedule(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(gcpolicy, "YOUNG_EVERY_SECONDS", 0.01)
    collection = ScheduledCollection()
    collection.start()
    try:
        class Node:
            pass

        freed = asyncio.Event()
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        weakref.finalize(node, freed.set)
        del node
        await asyncio.wait_for(freed.wait(), 5)
    finally:
        await collection.stop()


async def test_a_service_that_never_stopped_releases_the_policy_with_its_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(gcpolicy, "_holders", 0)
    collection = ScheduledCollection()
    collection.start()
    assert not gc.isenabled()
    assert collection.task is not None
    collection.task.cancel()  # what closing the event loop does to a task nobody stopped
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert gc.isenabled()
