"""The rate limiter's cost per request: many partner clients against one Redis.

`python -m bench.limiter [--redis URL] [--clients 1000] [--requests 20000] [--concurrency 64]`
runs the limiter's one atomic step (burst, daily and concurrency checked and counted, then the
slot released) for requests spread over `--clients` keys, `--concurrency` at a time, and
prints the mean and percentile cost of a request's limiter work, with Redis and in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from redis.asyncio import Redis

from crm_service.security.ratelimit import MemoryCounter, Policy, RedisCounter

POLICIES = (Policy.burst(1_000_000, 10), Policy.daily(100_000_000), Policy.concurrency(10_000))


async def _run(counter: object, clients: int, requests: int, concurrency: int) -> list[float]:
    keys = [f"bench:{uuid.uuid4().hex}" for _ in range(clients)]
    costs: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for index in queue:
            key = keys[index % clients]
            started = time.perf_counter()
            decision = await counter.acquire(key, POLICIES, lease_seconds=60)  # type: ignore[attr-defined]
            assert decision.allowed
            await counter.release(key, decision.slot)  # type: ignore[attr-defined]
            costs.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return costs


def _report(name: str, costs: list[float], elapsed: float) -> None:
    ordered = sorted(costs)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    print(
        f"{name}: {len(costs)} requests in {elapsed:.2f} s ({len(costs) / elapsed:,.0f}/s); "
        f"per request mean {statistics.mean(costs) * 1000:.3f} ms, p50 {p(0.5):.3f} ms, "
        f"p99 {p(0.99):.3f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    redis = Redis.from_url(args.redis)
    prefix = f"bench:{uuid.uuid4().hex}:"
    try:
        for name, counter in (
            ("redis", RedisCounter(redis, prefix=prefix)),
            ("memory", MemoryCounter(time.time)),
        ):
            started = time.perf_counter()
            costs = await _run(counter, args.clients, args.requests, args.concurrency)
            _report(name, costs, time.perf_counter() - started)
    finally:
        keys = [key async for key in redis.scan_iter(f"{prefix}*")]
        for start in range(0, len(keys), 500):
            await redis.delete(*keys[start : start + 500])
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
