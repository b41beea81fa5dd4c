"""HTTP/1.1 load from a process of its own: keep-alive connections, each sending one GET after the other, closed
loop (as fast as answers come) or at a fixed total rate (open loop: a request's latency counts from the moment
it was due, so a stalled server is not hidden by requests that were never sent).

    .venv/bin/python -m bench.load URL [--connections 32] [--seconds 10] [--rate 0] [--header 'Name: value']
                                       [--window 60]

Prints one JSON object: requests, errors (non-2xx or broken connections), seconds, requests per second, mean,
p50 and p99 latency in ms, and, with --window, the same per window of that many seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - the lock file installs it
    uvloop = None


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies), "errors": errors, "seconds": round(seconds, 3),
        "rps": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "mean_ms": round(1000 * sum(latencies) / len(latencies), 3) if latencies else float("nan"),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 3),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 3),
    }


async def connection(host: str, port: int, request: bytes, started: float, stop_at: float, interval: float,
                     offset: float, samples: list[tuple[float, float]], failures: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    due = started + offset
    try:
        while True:
            now = time.perf_counter()
            if interval:
                if due >= stop_at:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                sent_at = due
                due += interval
            else:
                if now >= stop_at:
                    return
                sent_at = now
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            if head[9:10] == b"2":
                samples.append((done - started, done - sent_at))
            else:
                failures.append(done - started)
    finally:
        writer.close()


async def main(arguments: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(arguments.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = "".join(f"{header}\r\n" for header in arguments.header)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode()
    connections = arguments.connections
    interval = connections / arguments.rate if arguments.rate else 0.0
    samples: list[tuple[float, float]] = []
    failures: list[float] = []
    started = time.perf_counter()
    stop_at = started + arguments.seconds
    results = await asyncio.gather(
        *(connection(host, port, request, started, stop_at, interval, interval * i / connections, samples, failures)
          for i in range(connections)),
        return_exceptions=True,
    )
    broken = sum(1 for result in results if isinstance(result, BaseException))
    elapsed = time.perf_counter() - started
    report: dict[str, object] = summary([latency for _, latency in samples], len(failures) + broken, elapsed)
    if arguments.window:
        windows = []
        for start in range(0, int(arguments.seconds), arguments.window):
            inside = [latency for at, latency in samples if start <= at < start + arguments.window]
            errors = sum(1 for at in failures if start <= at < start + arguments.window)
            windows.append({"from_s": start, **summary(inside, errors, min(arguments.window, elapsed - start))})
        report["windows"] = windows
    return report


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second in all (0: as fast as answered)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--window", type=int, default=0, help="also report per window of this many seconds")
    return parser


if __name__ == "__main__":
    arguments = parser().parse_args()
    if uvloop is not None:
        uvloop.install()
    print(json.dumps(asyncio.run(main(arguments))))
    sys.exit(0)
