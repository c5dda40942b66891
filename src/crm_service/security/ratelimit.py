"""Rate limits: burst, daily and concurrency policies, counted in Redis or in memory.

A request is limited under a *key* (a partner client, a signed-in session) by a tuple of
policies:

- **burst**: at most `limit` requests in a fixed window of `window_seconds` that opens with the
  key's first request and closes `window_seconds` later (the next request opens a new one);
- **daily**: at most `limit` requests per calendar day in UTC, reset at midnight UTC: a
  partner can plan against a reset it can name, and one counter per day is exact, where a
  rolling day would need a log of every request;
- **concurrency**: at most `limit` requests in flight; each holds a slot until its response is
  done (also when it fails or the client disconnects), and a slot whose instance died expires
  after `lease_seconds`.

One atomic step checks every policy of a request and, only when all pass, counts it under all
of them: a refused request counts nowhere. With Redis that step is one Lua script run on
Redis's clock (`TIME`), so every instance counts against one set of counters and one notion of
time. Without Redis the same arithmetic runs in process memory against the service's clock.
(The `limits` package counts one limit per call, on the caller's clock, and has no
concurrency limiter, so it can be exact for neither.)

The outcome becomes the IETF httpapi RateLimit header fields (draft -12, structured fields):
`RateLimit-Policy: "burst";q=100;w=10, "daily";q=25000;w=86400,
"concurrency";q=10;qu="concurrent-requests"` and `RateLimit: "burst";r=42;t=7, ...`; a refusal
is 429 problem+json of the draft's `quota-exceeded` type, naming `violated-policies`, with a
`Retry-After` equal to the longest `t` among them.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_service.errors import PROBLEM_MEDIA_TYPE, ServiceUnavailable, TooManyRequests

logger = structlog.get_logger("crm_service.ratelimit")

DAY = 86400
# The in-memory counters forget ended windows once they hold this many keys.
PRUNE_ABOVE = 10_000
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
# Where the request's limiter state waits for the middleware (headers, slot release).
_STATE = "crm.ratelimit"


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy: `kind` is burst, daily or concurrency; `window` in seconds (None for
    concurrency)."""

    name: str
    kind: str
    limit: int
    window: int | None = None

    @classmethod
    def burst(cls, limit: int, window_seconds: int) -> Policy:
        return cls("burst", "burst", limit, window_seconds)

    @classmethod
    def daily(cls, limit: int) -> Policy:
        return cls("daily", "daily", limit, DAY)

    @classmethod
    def concurrency(cls, limit: int) -> Policy:
        return cls("concurrency", "concurrency", limit, None)

    def declaration(self) -> str:
        """This policy as a member of `RateLimit-Policy`."""
        if self.kind == "concurrency":
            return f'"{self.name}";q={self.limit};qu="concurrent-requests"'
        return f'"{self.name}";q={self.limit};w={self.window}'


@dataclass(frozen=True, slots=True)
class PolicyState:
    policy: Policy
    remaining: int
    reset_seconds: int | None  # None for concurrency: a slot frees when a request ends

    def member(self) -> str:
        """This policy's state as a member of `RateLimit`."""
        text = f'"{self.policy.name}";r={self.remaining}'
        return text if self.reset_seconds is None else f"{text};t={self.reset_seconds}"


@dataclass(slots=True)
class Decision:
    allowed: bool
    states: list[PolicyState]
    violated: list[str] = field(default_factory=list)
    slot: str | None = None  # the concurrency slot held, to be released

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": ", ".join(state.policy.declaration() for state in self.states),
            "RateLimit": ", ".join(state.member() for state in self.states),
        }

    @property
    def retry_after(self) -> int:
        waits = [
            state.reset_seconds or 1 for state in self.states if state.policy.name in self.violated
        ]
        return max(1, *waits) if waits else 1


class Counter(Protocol):
    async def acquire(
        self, key: str, policies: Sequence[Policy], *, lease_seconds: int
    ) -> Decision: ...

    async def release(self, key: str, slot: str) -> None: ...


def _slot_id() -> str:
    return secrets.token_hex(8)


class MemoryCounter:
    """Counters in this process (the embedded deployment), on `now` (the service's clock,
    epoch seconds). Atomic because nothing here awaits."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, ends at)
        self._days: dict[str, tuple[int, int]] = {}  # key -> (count, day number)
        self._slots: dict[str, dict[str, float]] = {}  # key -> slot -> lease ends at

    async def acquire(
        self, key: str, policies: Sequence[Policy], *, lease_seconds: int
    ) -> Decision:
        now = self._now()
        day = int(now // DAY)
        if len(self._windows) + len(self._days) > PRUNE_ABOVE:
            self._forget_expired(now)
        states: list[tuple[Policy, int, int | None]] = []
        violated: list[str] = []
        for policy in policies:
            pkey = f"{key}:{policy.name}"
            if policy.kind == "concurrency":
                slots = self._slots.setdefault(pkey, {})
                for held, ends in list(slots.items()):
                    if ends <= now:
                        del slots[held]
                used, reset = len(slots), None
            elif policy.kind == "daily":
                count, counted_day = self._days.get(pkey, (0, day))
                used = count if counted_day == day else 0
                reset = DAY - int(now % DAY)
            else:
                count, ends = self._windows.get(pkey, (0, 0.0))
                if ends <= now:
                    count, ends = 0, now + (policy.window or 1)
                used, reset = count, max(1, math.ceil(ends - now))
            if used >= policy.limit:
                violated.append(policy.name)
            states.append((policy, used, reset))
        if violated:
            return Decision(
                False,
                [PolicyState(p, max(0, p.limit - used), reset) for p, used, reset in states],
                violated,
            )
        slot: str | None = None
        for policy, _used, _reset in states:
            pkey = f"{key}:{policy.name}"
            if policy.kind == "concurrency":
                slot = _slot_id()
                self._slots.setdefault(pkey, {})[slot] = now + lease_seconds
            elif policy.kind == "daily":
                count, counted_day = self._days.get(pkey, (0, day))
                self._days[pkey] = ((count if counted_day == day else 0) + 1, day)
            else:
                count, ends = self._windows.get(pkey, (0, 0.0))
                if ends <= now:
                    count, ends = 0, now + (policy.window or 1)
                self._windows[pkey] = (count + 1, ends)
        return Decision(
            True,
            [PolicyState(p, p.limit - used - 1, reset) for p, used, reset in states],
            slot=slot,
        )

    async def release(self, key: str, slot: str) -> None:
        self._slots.get(f"{key}:concurrency", {}).pop(slot, None)

    def _forget_expired(self, now: float) -> None:
        """Ended windows and past days are dropped now and then, so sessions that come and
        go do not grow the process."""
        day = int(now // DAY)
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        self._days = {k: v for k, v in self._days.items() if v[1] == day}
        self._slots = {k: v for k, v in self._slots.items() if v}


# KEYS: one per policy (the daily key gets the UTC day appended here, on Redis's clock).
# ARGV: lease seconds, slot id, then per policy: kind (b|d|c), limit, window seconds.
# Returns: allowed (0|1), then per policy: used before this request, reset seconds (-1: none).
ACQUIRE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local day = math.floor(now / 86400)
local lease = tonumber(ARGV[1])
local slot = ARGV[2]
local allowed = 1
local out = {}
local keys = {}
for i = 1, #KEYS do
  local kind = ARGV[3 * i]
  local limit = tonumber(ARGV[3 * i + 1])
  local window = tonumber(ARGV[3 * i + 2])
  local key = KEYS[i]
  local used, reset
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used = redis.call('ZCARD', key)
    reset = -1
  elseif kind == 'd' then
    key = key .. ':' .. day
    used = tonumber(redis.call('GET', key) or '0')
    reset = 86400 - math.floor(now % 86400)
  else
    used = tonumber(redis.call('GET', key) or '0')
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      used = 0
      reset = window
    else
      reset = math.max(1, math.ceil(ttl / 1000))
    end
  end
  if used >= limit then allowed = 0 end
  keys[i] = key
  out[2 * i] = used
  out[2 * i + 1] = reset
end
if allowed == 1 then
  for i = 1, #KEYS do
    local kind = ARGV[3 * i]
    local window = tonumber(ARGV[3 * i + 2])
    local key = keys[i]
    if kind == 'c' then
      redis.call('ZADD', key, now + lease, slot)
      redis.call('EXPIRE', key, lease + 1)
    elseif kind == 'd' then
      redis.call('INCR', key)
      redis.call('EXPIRE', key, 86400 + 60)
    else
      if redis.call('INCR', key) == 1 then
        redis.call('EXPIRE', key, window)
      end
    end
  end
end
out[1] = allowed
return out
"""

_KIND_CODES = {"burst": "b", "daily": "d", "concurrency": "c"}


class RedisCounter:
    """Counters in Redis, exact across instances: one script call per request."""

    def __init__(self, redis: Any, prefix: str = "crm:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(ACQUIRE_SCRIPT)

    async def acquire(
        self, key: str, policies: Sequence[Policy], *, lease_seconds: int
    ) -> Decision:
        slot = _slot_id()
        keys = [f"{self._prefix}{key}:{policy.name}" for policy in policies]
        args: list[Any] = [lease_seconds, slot]
        for policy in policies:
            args += [_KIND_CODES[policy.kind], policy.limit, policy.window or 0]
        result = await self._script(keys=keys, args=args)
        allowed = int(result[0]) == 1
        states, violated = [], []
        for index, policy in enumerate(policies):
            used, reset = int(result[2 * index + 1]), int(result[2 * index + 2])
            if used >= policy.limit:
                violated.append(policy.name)
            remaining = policy.limit - used - (1 if allowed else 0)
            states.append(PolicyState(policy, max(0, remaining), None if reset < 0 else reset))
        has_slot = allowed and any(policy.kind == "concurrency" for policy in policies)
        return Decision(allowed, states, violated, slot if has_slot else None)

    async def release(self, key: str, slot: str) -> None:
        await self._redis.zrem(f"{self._prefix}{key}:concurrency", slot)


class RateLimited(TooManyRequests):
    """429 with the draft's problem type and `violated-policies` (rendered by
    :func:`quota_exceeded_response`)."""

    slug, title = "rate-limited", "Too many requests"

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            f"The rate limit {', '.join(decision.violated)} is exhausted; retry after "
            f"{decision.retry_after} seconds.",
            headers={**decision.headers(), "Retry-After": str(decision.retry_after)},
        )
        self.decision = decision


async def render_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for :class:`RateLimited`."""
    assert isinstance(exc, RateLimited)
    return quota_exceeded_response(request.url.path, exc)


def quota_exceeded_response(path: str | None, error: RateLimited) -> JSONResponse:
    body = {
        "type": QUOTA_EXCEEDED,
        "title": "Quota exceeded",
        "status": 429,
        "detail": error.detail,
        "violated-policies": list(error.decision.violated),
    }
    if path:
        body["instance"] = path
    return JSONResponse(body, status_code=429, media_type=PROBLEM_MEDIA_TYPE, headers=error.headers)


class RateLimiter:
    """The service's limiter: counts through Redis when configured, else in memory."""

    def __init__(self, counter: Counter, *, lease_seconds: int) -> None:
        self.counter = counter
        self.lease_seconds = lease_seconds

    async def enforce(self, scope: Scope, key: str, policies: Sequence[Policy]) -> None:
        """Count this request under `key`; raise 429 when a policy is exhausted. The headers
        go on the response and a concurrency slot is released when it is done, by
        :class:`RateLimitMiddleware`."""
        if not policies:
            return
        try:
            decision = await self.counter.acquire(key, policies, lease_seconds=self.lease_seconds)
        except (RedisError, OSError):
            # Unlimited requests are not served while the counters cannot be reached.
            logger.warning("rate_limit_unavailable")
            raise ServiceUnavailable("Rate limiting is unavailable; try again shortly.") from None
        state = scope.setdefault("state", {}).setdefault(_STATE, [])
        state.append((key, decision))
        if not decision.allowed:
            raise RateLimited(decision)


def epoch_clock(holder: Any) -> Callable[[], float]:
    """Epoch seconds from the clock `holder.clock` has at each call (tests replace it)."""
    return lambda: holder.clock.now().timestamp()


class RateLimitMiddleware:
    """Puts the RateLimit header fields on every limited response and always releases the
    request's concurrency slot: after the response, after an error, and when the client
    disconnects (the request's task is cancelled and unwinds through here)."""

    def __init__(self, app: ASGIApp, limiter: Callable[[], RateLimiter | None]) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decisions = scope.get("state", {}).get(_STATE)
                if decisions:
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    for name, value in decisions[-1][1].headers().items():
                        if name.lower().encode() not in present:
                            headers.append((name.lower().encode(), value.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            decisions = scope.get("state", {}).get(_STATE) or []
            limiter = self.limiter()
            for key, decision in decisions:
                if decision.slot is not None and limiter is not None:
                    await _release(limiter, key, decision.slot)


async def _release(limiter: RateLimiter, key: str, slot: str) -> None:
    # Shielded: a request cancelled by its client's disconnect still gives its slot back. A
    # failure here (Redis gone) leaves the slot to expire with its lease.
    with anyio.CancelScope(shield=True):
        try:
            await limiter.counter.release(key, slot)
        except Exception:  # noqa: BLE001 - the lease frees the slot
            logger.warning("rate_limit_slot_not_released")
