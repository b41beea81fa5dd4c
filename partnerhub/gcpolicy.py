"""The cyclic garbage collector on a clock instead of on allocation counts.

A pricing pass or a batch of events allocates hundreds of thousands of objects that live for a chunk and die by
reference counting; nearly none is in a cycle. Collections triggered by allocation counts kept scanning those
live chunks: about a fifth of the Python CPU of a 100,000-sale recalculation (bench/recalc.py: 4.4 s of Python
with them, 3.45 s without). While a service runs, automatic collection is off and a task collects on a schedule
instead: the young generation every second, the middle one every 10 s, everything every minute. Cyclic garbage
lives at most about a second longer than it would; memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

YOUNG_EVERY_SECONDS = 1.0
MIDDLE_EVERY = 10  # young collections
FULL_EVERY = 60  # young collections

_holders = 0


async def _collect() -> None:
    ticks = 0
    while True:
        await asyncio.sleep(YOUNG_EVERY_SECONDS)
        ticks += 1
        gc.collect(2 if ticks % FULL_EVERY == 0 else 1 if ticks % MIDDLE_EVERY == 0 else 0)


class ScheduledCollection:
    """Automatic collection off and scheduled collection on, for as long as any service of the process runs.

    A service holds the policy while its collecting task lives: the hold ends when the task ends, however it
    ends (stopped, or cancelled with its event loop), so a service that never reached its shutdown cannot leave
    the process without automatic collection.
    """

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        global _holders
        _holders += 1
        gc.disable()
        self.task = asyncio.create_task(_collect(), name="garbage-collection")
        self.task.add_done_callback(_release)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _release(_task: asyncio.Task[None]) -> None:
    global _holders
    _holders -= 1
    if _holders == 0:
        gc.enable()
        gc.collect()
