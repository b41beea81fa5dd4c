"""A webhooks process SIGKILLed in the middle of a delivery loses nothing: the delivery in flight is sent again once
its lease runs out, and the events published while no process ran are delivered after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from partnerhub.embedded import free_port
from tests.conftest import Infrastructure, Publish, eventually
from tests.webhooks.receiver import Received, Receiver, answer
from tests.webhooks.support import Tokens, accrual, event_ids, new_path

ROOT = Path(__file__).resolve().parents[2]
# A timeout long enough for the kill to land while the POST is in flight; a lease just longer than it.
PROCESS_SETTINGS = {
    "PARTNERHUB_WEBHOOK_TIMEOUT_SECONDS": "5",
    "PARTNERHUB_WEBHOOK_LEASE_SECONDS": "6",
    "PARTNERHUB_WEBHOOK_RETRY_FIRST_SECONDS": "0.05",
    "PARTNERHUB_WEBHOOK_RETRY_LONGEST_SECONDS": "0.3",
    "PARTNERHUB_WEBHOOK_POLL_SECONDS": "0.05",
    "PARTNERHUB_LOG_LEVEL": "WARNING",
    "PARTNERHUB_WEBHOOK_SECRETS_KEYS": "hNwQbvwxVBh6jIzBfiWMYmT4pzKwRBQWyMlLNfB5rZc=",
}


@dataclass
class ServiceProcess:
    env: dict[str, str]
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "partnerhub.cli", "serve", "webhooks", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    async def start(self) -> None:
        self.launch()

        async def ready() -> bool:
            assert self.popen is not None and self.popen.poll() is None, self.log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, within=90, interval=0.2)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)
        self.popen = None


@pytest.fixture
def process(infrastructure: Infrastructure, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {**os.environ, **infrastructure.env(), **PROCESS_SETTINGS}
    service = ServiceProcess(env, free_port("127.0.0.1"), tmp_path / "webhooks.log")
    yield service
    service.kill()


@pytest.fixture
async def client(process: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
        yield http


async def test_a_kill_in_the_middle_of_a_delivery_loses_nothing(
    process: ServiceProcess, client: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    await process.start()
    partner = uuid.uuid4()
    path = new_path()
    never = asyncio.Event()

    async def held(_request: Received) -> int:
        await never.wait()
        return 200

    receiver.behaviours[path] = held
    created = await client.post("/v1/webhooks", headers=tokens(), json={
        "url": receiver.url(path), "event_types": ["accrual.recorded"], "partner_id": str(partner)})
    assert created.status_code == 201, created.text
    subscription = created.json()["id"]

    first = await accrual(publish, partner)
    await eventually(lambda: receiver.in_flight.get(path, 0) == 1, within=60, interval=0.02)
    process.kill()  # SIGKILL while the receiver still holds the POST: no answer was recorded

    receiver.behaviours[path] = answer(200)
    while_down = [await accrual(publish, partner) for _ in range(5)]
    await process.start()

    everything = {first, *while_down}
    await eventually(lambda: everything <= set(event_ids(receiver, path)), within=90)
    # The one in flight at the kill is sent again once its lease runs out.
    await eventually(lambda: event_ids(receiver, path).count(first) >= 2, within=60)

    async def all_delivered() -> bool:
        page = (await client.get(f"/v1/webhooks/{subscription}/deliveries", headers=tokens(),
                                 params={"limit": 100})).json()["items"]
        return len(page) == 6 and all(d["status"] == "delivered" for d in page)

    await eventually(all_delivered, within=60)
