"""API keys, scopes and who may see which job.

Keys look like ``mlq_<name>_<secret>``; the server stores only their sha256 (``MLQUEUE_API_KEYS``).
Scopes: ``submit`` (create and cancel jobs), ``read`` (read jobs and models), ``admin`` (everything,
any key's jobs, reload, webhook redelivery). A key with ``submit`` sees only the jobs it created; an
admin, and a ``read`` key without ``submit`` (a read-only view), see all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import state_of
from api.ratelimit import enforce, enforce_auth_failures
from shared.errors import ErrorCode, Forbidden, Unauthorized
from shared.jobs import Job
from shared.scheduler import Priority


class Scope(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[Scope]
    weight: float = 1.0  # its share of a busy queue, against the other keys with work waiting
    priority: Priority = Priority.NORMAL  # of its jobs that do not say
    max_priority: Priority = Priority.HIGH  # the most it may ask for


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key, or an anonymous client when authentication is off."""

    key: ApiKey | None
    client: str  # the rate-limit identity

    @property
    def owner(self) -> str | None:
        return self.key.name if self.key else None

    @property
    def weight(self) -> float:
        return self.key.weight if self.key else 1.0

    def priority_for(self, requested: Priority | None) -> Priority:
        """The priority a job of this caller runs at: what it asked for, else its key's default;
        403 above its key's ceiling (a silent downgrade would surprise more than a refusal)."""
        if self.key is None:
            return requested or Priority.NORMAL
        priority = requested or self.key.priority
        if priority.rank < self.key.max_priority.rank:
            raise Forbidden(
                f"this API key may submit at most {self.key.max_priority.value!r} priority",
                code=ErrorCode.PRIORITY_NOT_ALLOWED,
            )
        return priority

    @property
    def can_see_all(self) -> bool:
        """Admins, and read-only keys (``read`` without ``submit``): a view over every job, for
        dashboards and support, that can change nothing (cancel needs ``submit``, reload ``admin``)."""
        if self.key is None:
            return True
        scopes = self.key.scopes
        return Scope.ADMIN in scopes or (Scope.READ in scopes and Scope.SUBMIT not in scopes)

    def can_see(self, job: Job) -> bool:
        return self.can_see_owner(job.owner)

    def can_see_owner(self, owner: str | None) -> bool:
        """Whether a job created by ``owner`` is visible (live, or expired: the same rule, so a 410
        never tells another key that an id exists)."""
        return self.can_see_all or (self.key is not None and owner == self.key.name)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEY_OPTIONS = ("weight", "priority", "max_priority")


def parse_api_keys(text: str) -> dict[str, ApiKey]:
    """``name=<sha256>:scope|scope[;weight=2][;priority=low][;max_priority=normal],...`` →
    {sha256: ApiKey}. Raises ValueError on a bad entry (the API refuses to start)."""
    keys: dict[str, ApiKey] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, _, rest = entry.partition("=")
        digest, _, tail = rest.partition(":")
        scopes, *options = tail.split(";")
        if not name or len(digest) != 64 or not scopes:
            raise ValueError(f"bad MLQUEUE_API_KEYS entry {entry[:40]!r}: expected name=<sha256>:scope|scope")
        keys[digest.lower()] = ApiKey(name, frozenset(Scope(s) for s in scopes.split("|")), **_key_options(options))
    return keys


def _key_options(options: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for option in options:
        key, _, value = option.partition("=")
        key = key.strip()
        if key not in KEY_OPTIONS or not value:
            raise ValueError(f"bad MLQUEUE_API_KEYS option {option[:40]!r}: expected one of {', '.join(KEY_OPTIONS)}")
        if key == "weight":
            weight = float(value)
            if not 0.01 <= weight <= 1000:
                raise ValueError(f"MLQUEUE_API_KEYS weight must be from 0.01 to 1000, got {value[:20]!r}")
            parsed[key] = weight
        else:
            parsed[key] = Priority(value.strip())
    if (
        Priority(parsed.get("priority", Priority.NORMAL)).rank
        < Priority(parsed.get("max_priority", Priority.HIGH)).rank
    ):
        raise ValueError("MLQUEUE_API_KEYS: a key's default priority must not be above its max_priority")
    return parsed


def generate_key(name: str, scopes: list[Scope], options: dict[str, str] | None = None) -> tuple[str, str]:
    """A new key and its ``MLQUEUE_API_KEYS`` entry. The key is shown once and never stored."""
    key = f"mlq_{name}_{secrets.token_urlsafe(32)}"
    extra = "".join(f";{k}={v}" for k, v in (options or {}).items())
    return key, f"{name}={hash_key(key)}:{'|'.join(s.value for s in scopes)}{extra}"


# Declares the scheme in the OpenAPI document on every route that uses ``authorize``. It never
# rejects (auto_error off): ``authenticate`` below does, with our error codes, and lets everyone in
# when no keys are configured.
BEARER = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="mlq_<name>_<secret>",
    description="An API key (`python -m api.keys`) as `Authorization: Bearer <key>`.",
    auto_error=False,
)


def client_ip(request: Request) -> str:
    """The TCP peer, or what a trusted proxy says it forwarded for (``MLQUEUE_TRUSTED_PROXIES``)."""
    return request.client.host if request.client else "unknown"


def authenticate(request: Request, keys: dict[str, ApiKey]) -> Principal:
    client = client_ip(request)
    if not keys:
        return Principal(None, f"ip:{client}")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send an API key: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_key(token.strip())
    for known, key in keys.items():  # constant-time compare against every configured hash
        if hmac.compare_digest(known, digest):
            return Principal(key, f"key:{key.name}")
    raise Unauthorized("unknown API key", code=ErrorCode.INVALID_API_KEY, headers={"WWW-Authenticate": "Bearer"})


def authenticated(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: who is calling, holding ``scope`` (or admin). 401 without a known key (each
    counted against the client's failed-authentication limit), 403 without the scope."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> Principal:
        state = state_of(request)
        try:
            principal = authenticate(request, state.api_keys)
        except Unauthorized:
            await enforce_auth_failures(state, client_ip(request))
            raise
        if principal.key and scope not in principal.key.scopes and Scope.ADMIN not in principal.key.scopes:
            raise Forbidden(f"this API key lacks the {scope.value!r} scope", code=ErrorCode.INSUFFICIENT_SCOPE)
        return principal

    return dependency


def authorize(scope: Scope, *, batch: bool = False) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A route's dependency: the caller, ``authenticated`` with ``scope``, then counted against its
    rate limits (``api.ratelimit.enforce``; ``batch``: the batch limit too). Authentication runs
    first, so a refused key never spends the rate limit of the key it claims to be."""

    caller = Depends(authenticated(scope))  # a default, not an annotation: annotations are strings here

    async def dependency(request: Request, response: Response, principal: Principal = caller) -> Principal:
        await enforce(state_of(request), principal.client, response, batch=batch)
        return principal

    return dependency


async def require_metrics_token(request: Request) -> None:
    """A dependency of ``GET /metrics``: with ``MLQUEUE_METRICS_TOKEN`` set, that bearer token is
    required (compared in constant time); unset, the endpoint is open."""
    state = state_of(request)
    expected = state.settings.metrics_token
    if not expected:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
        return
    await enforce_auth_failures(state, client_ip(request))
    raise Unauthorized(
        "send the metrics token: Authorization: Bearer <MLQUEUE_METRICS_TOKEN>",
        code=ErrorCode.INVALID_METRICS_TOKEN,
        headers={"WWW-Authenticate": "Bearer"},
    )
