"""Benchmark: the request path. A single-resource GET (`GET /v1/partners/{id}`, admin token) on the registry,
run as `partnerhub serve registry`, against the raw limit of a bare FastAPI + asyncpg handler reading the same row
by key (bench/bare.py), both under the same load from a process of their own (bench/load.py), in the same run.

    .venv/bin/python bench/api.py [--connections 32] [--seconds 10] [--rounds 2] [--soak 0]
                                  [--database-url postgresql+asyncpg://user:pw@host/any]

Starts Tansu and an embedded PostgreSQL unless told otherwise (see bench/support.py), creates and migrates a
registry database, registers one partner through the API, then, for each round, loads the bare handler and
Partner Hub in turn: first over one connection (latency), then over --connections (throughput). Prints each
figure with the CPU each server spent per request, the medians over the rounds, and the ratio Partner Hub / bare
of the requests per second at --connections.

--soak SECONDS then holds Partner Hub at 80 % of its measured rate for that long (open loop) and prints p99 per
minute and the service's resident memory at the start and the end: flat p99 and memory are what it shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.support import add_database_url, environment, machine, row, run
from partnerhub.embedded import free_ports

ROOT = Path(__file__).resolve().parent.parent
PARTNER = {"name": "Bench Distribution", "country": "DE", "region": "EMEA", "types": ["sales", "service"]}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


async def start(name: str, command: list[str], url: str, ready_path: str, env: dict[str, str]) -> Server:
    server = Server(name, spawn(command, env), url)
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient() as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {server.process.returncode}")
            try:
                if (await client.get(f"{url}{ready_path}", timeout=2)).status_code < 500:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{name} did not answer {ready_path} within 90 s")
            await asyncio.sleep(0.2)


async def load(url: str, headers: dict[str, str], connections: int, seconds: float, rate: float = 0.0,
               window: int = 0) -> dict[str, object]:
    command = [sys.executable, "-m", "bench.load", url, "--connections", str(connections), "--seconds", str(seconds),
               "--rate", str(rate), "--window", str(window)]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed with code {process.returncode}")
    result: dict[str, object] = json.loads(out)
    return result


async def measure(server: Server, path: str, headers: dict[str, str], connections: int,
                  seconds: float) -> dict[str, float]:
    cpu = server.cpu_seconds()
    result = await load(f"{server.url}{path}", headers, connections, seconds)
    spent = server.cpu_seconds() - cpu
    if result["errors"]:
        raise RuntimeError(f"{server.name} answered {result['errors']} requests with an error")
    figures = {key: float(value) for key, value in result.items() if isinstance(value, int | float)}
    figures["cpu_ms_per_request"] = 1000 * spent / max(figures["requests"], 1)
    return figures


def show(label: str, figures: dict[str, float]) -> None:
    row(label, f"{figures['rps']:>9,.0f} req/s  mean {figures['mean_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
               f"server CPU {figures['cpu_ms_per_request']:.3f} ms/req")


async def main(arguments: argparse.Namespace) -> None:
    async with environment("api", ["registry"], arguments.database_url) as env:
        print(f"api: GET /v1/partners/{{id}}, {arguments.rounds} round(s) of {arguments.seconds:.0f} s per figure; "
              f"{env.where()}")
        print(f"  machine at the start: {machine()}")
        hub_port, bare_port = free_ports(2)
        child_env = dict(os.environ)
        hub = await start(
            "Partner Hub", [sys.executable, "-m", "partnerhub.cli", "serve", "registry", "--port", str(hub_port)],
            f"http://127.0.0.1:{hub_port}", "/readyz", child_env)
        bare: Server | None = None
        try:
            headers = env.admin_headers()
            async with httpx.AsyncClient(base_url=hub.url) as client:
                created = await client.post("/v1/partners", json=PARTNER, headers=headers)
                created.raise_for_status()
            path = f"/v1/partners/{created.json()['id']}"
            bare_env = {**child_env, "BENCH_BARE_DSN": env.dsn("registry")}
            bare = await start(
                "bare", [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(bare_port),
                         "--log-level", "warning", "--no-access-log"],
                f"http://127.0.0.1:{bare_port}", path, bare_env)
            rounds: dict[tuple[str, int], list[dict[str, float]]] = {}
            for _ in range(arguments.rounds):
                for server, auth in ((bare, {}), (hub, headers)):
                    await load(f"{server.url}{path}", auth, arguments.connections, 2.0)  # warm up
                    for connections in (1, arguments.connections):
                        figures = await measure(server, path, auth, connections, arguments.seconds)
                        rounds.setdefault((server.name, connections), []).append(figures)
            for (name, connections), results in rounds.items():
                for i, figures in enumerate(results, 1):
                    show(f"{name}, {connections} connection(s), round {i}", figures)
            medians = {key: statistics.median(r["rps"] for r in results) for key, results in rounds.items()}
            single = {key: statistics.median(r["mean_ms"] for r in results) for key, results in rounds.items()}
            many = arguments.connections
            row(f"median req/s at {many} connections", f"bare {medians[('bare', many)]:,.0f}, "
                f"Partner Hub {medians[('Partner Hub', many)]:,.0f}")
            row(f"ratio Partner Hub / bare at {many} connections",
                f"{medians[('Partner Hub', many)] / medians[('bare', many)]:8.3f}")
            row("median latency at 1 connection", f"bare {single[('bare', 1)]:.2f} ms, "
                f"Partner Hub {single[('Partner Hub', 1)]:.2f} ms")
            if arguments.soak:
                rate = 0.8 * medians[("Partner Hub", many)]
                before = hub.rss_mib()
                result = await load(f"{hub.url}{path}", headers, many, arguments.soak, rate=rate, window=60)
                after = hub.rss_mib()
                row(f"soak at {rate:,.0f} req/s for {arguments.soak:.0f} s",
                    f"{result['rps']:,.0f} req/s served, {result['errors']} errors, p99 {result['p99_ms']} ms")
                windows = result.get("windows")
                assert isinstance(windows, list)
                row("  p99 per minute (ms)", ", ".join(f"{w['p99_ms']:.1f}" for w in windows))
                row("  service memory (RSS)", f"{before:.0f} MiB at the start, {after:.0f} MiB at the end")
        finally:
            for server in (hub, bare):
                if server is not None:
                    server.stop()
        print(f"  machine at the end: {machine()}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured load")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds at 80 %% of Partner Hub's rate (0: none)")
    add_database_url(parser)
    return parser


if __name__ == "__main__":
    run(main(parser().parse_args()))
