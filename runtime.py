"""What a running tool needs: settings, the store, cluster connections and caches.

A server (or an agent) makes one `Runtime` and binds its tools to it; inside a tool, `current()` returns it.
Blocking client calls run in worker threads through `Runtime.call`, so independent calls overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import getpass
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, TypeVar

import anyio

from connections.kube import Clusters, Connection
from errors import CloudPilotError, InvalidInput, NotAllowed
from settings import Settings
from store import Store, open_store
from tools.catalogue import ToolSpec

T = TypeVar("T")
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Confirm = Callable[[str], Awaitable[bool | None]]  # True approved, False declined, None: cannot ask

_current: ContextVar[Runtime] = ContextVar("cloudpilot_runtime")
_progress: ContextVar[Progress | None] = ContextVar("cloudpilot_progress", default=None)
_client: ContextVar[str] = ContextVar("cloudpilot_client", default="direct call")
_confirm: ContextVar[Confirm | None] = ContextVar("cloudpilot_confirm", default=None)

SCOPES = ("read", "write", "destructive")


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the transport authenticated it (never what the client says of itself).

    `scopes` bounds what the caller may do on top of the server's own safety settings: read < write < destructive.
    """

    name: str
    scopes: frozenset[str] = frozenset(SCOPES)
    transport: str = "direct"
    toolsets: frozenset[str] | None = None  # None: every toolset the server enables (guard/access.py narrows it)

    def may(self, access: str) -> bool:
        return access in self.scopes

    def allows(self, spec: ToolSpec) -> bool:
        """Whether this caller may see and call the tool: its access level and its toolset."""
        return self.may(spec.access) and (self.toolsets is None or spec.toolset in self.toolsets)


LOCAL = Principal(f"local user {getpass.getuser()}", transport="direct")
_principal: ContextVar[Principal] = ContextVar("cloudpilot_principal", default=LOCAL)


class TTLCache:
    """Values that expire; concurrent loads of one key share a single fetch."""

    def __init__(self) -> None:
        self._data: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    async def get(
        self,
        key: Any,
        ttl: float,
        load: Callable[[], Awaitable[T]],
        refresh: bool = False,
        keep: Callable[[T], bool] | None = None,
    ) -> tuple[T, float]:
        """Return (value, age in seconds); load it when missing, expired or `refresh`. A loaded value for which
        `keep` says False (a partial result) is returned but not kept, so the next call loads again."""
        hit = self._data.get(key)
        if hit and not refresh and time.monotonic() - hit[0] < ttl:
            return hit[1], time.monotonic() - hit[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._data.get(key)
            if hit and not refresh and time.monotonic() - hit[0] < ttl:
                return hit[1], time.monotonic() - hit[0]
            value = await load()
            if ttl > 0 and (keep is None or keep(value)):
                self._data[key] = (time.monotonic(), value)
            return value, 0.0

    def drop(self, prefix: Any) -> None:
        """Forget every key whose first element is `prefix` (e.g. a cluster name)."""
        for key in [k for k in self._data if isinstance(k, tuple) and k and k[0] == prefix]:
            self._data.pop(key, None)


class Runtime:
    """The shared state behind one server's (or one agent's) tools."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        if store is not None:
            self.__dict__["store"] = store
        self.cache = TTLCache()

    @cached_property
    def store(self) -> Store:
        return open_store(self.settings)  # SQLite, or PostgreSQL when store.url is set

    @cached_property
    def clusters(self) -> Clusters:
        return Clusters(self.settings.k8s, self.store)

    def connection(self, cluster: str | None) -> Connection:
        """The connection for a tool's `cluster` argument (may read kubeconfig: blocking on first use)."""
        return self.clusters.get(cluster or None)

    async def connect(self, cluster: str | None) -> Connection:
        """`connection()` for async code: no thread hop once the connection is open."""
        cached = self.clusters.cached(cluster)
        return cached if cached is not None else await self.call(self.connection, cluster)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking function in a worker thread."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

    def namespace_visible(self, namespace: str) -> bool:
        """False for namespaces hidden by the allow/deny lists; cluster-scoped objects ("") are visible."""
        s = self.settings.safety
        if not namespace:
            return True
        if s.namespace_allow and not any(fnmatch.fnmatchcase(namespace, p) for p in s.namespace_allow):
            return False
        return not any(fnmatch.fnmatchcase(namespace, p) for p in s.namespace_deny)

    def check_namespace(self, namespace: str | None) -> None:
        """Refuse namespaces hidden by the allow/deny lists."""
        if namespace and not self.namespace_visible(namespace):
            raise NotAllowed(
                f"Namespace {namespace!r} is not available: CloudPilot's namespace allow/deny settings hide it.",
                hint="Ask an operator to change safety.namespace_allow/deny.",
            )

    def close(self) -> None:
        if "clusters" in self.__dict__:
            self.clusters.close()


async def attempt(work: Awaitable[T]) -> T | CloudPilotError:
    """The result of `work`, or the CloudPilotError it raised: for partial results over concurrent calls."""
    try:
        return await work
    except CloudPilotError as e:
        return e


def current() -> Runtime:
    """The runtime of the tool call in progress."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("no CloudPilot runtime is bound: call tools through bind() or use()") from None


@contextlib.contextmanager
def use(runtime: Runtime) -> Iterator[Runtime]:
    """Make `runtime` current in this context (tests, scripts, agents)."""
    token = _current.set(runtime)
    try:
        yield runtime
    finally:
        _current.reset(token)


async def report_progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Tell the caller how a long operation is going (MCP progress notifications when available)."""
    sink = _progress.get()
    if sink is not None:
        await sink(done, total, message)


def bind(spec: ToolSpec, runtime: Runtime) -> Callable[..., Awaitable[Any]]:
    """`spec.fn` with `runtime` made current for each call; same name, docstring and signature."""
    fn = spec.fn

    async def bound(**kwargs: Any) -> Any:
        token = _current.set(runtime)
        try:
            return await fn(**kwargs)
        finally:
            _current.reset(token)

    bound.__name__ = spec.name
    bound.__qualname__ = spec.name
    bound.__doc__ = spec.description
    bound.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    bound.__annotations__ = dict(inspect.get_annotations(fn, eval_str=True))
    return bound


@contextlib.contextmanager
def progress_to(sink: Progress | None) -> Iterator[None]:
    token = _progress.set(sink)
    try:
        yield
    finally:
        _progress.reset(token)


@contextlib.contextmanager
def caller(client: str, confirm: Confirm | None = None, principal: Principal | None = None) -> Iterator[None]:
    """Who is calling: the client's self-declared name (recorded as such), the authenticated principal (what
    permissions and the audit's approver rest on) and, if the client can ask its user, how to ask."""
    tokens = (_client.set(client), _confirm.set(confirm), _principal.set(principal or LOCAL))
    try:
        yield
    finally:
        _client.reset(tokens[0])
        _confirm.reset(tokens[1])
        _principal.reset(tokens[2])


def client_name() -> str:
    """The calling client as it names itself (e.g. 'mcp:claude-ai 0.1'; unverified), else 'direct call'."""
    return _client.get()


def principal() -> Principal:
    """The authenticated caller of the tool call in progress (the local user for stdio and direct calls)."""
    return _principal.get()


CHAT_TRANSPORTS = ("slack", "feishu")  # people deciding with a chat button (bots/), audited as such
DECIDED_OUTSIDE = {"slack": "slack button", "feishu": "feishu button", "policy": "watch.policy_file"}  # how, audited


def approval_methods(settings: Settings, transport: str) -> set[str]:
    """How plans may be approved on this transport: fix.approval, else all three for a local user (stdio, direct
    calls) and elicitation or policy elsewhere (HTTP, agents), where a `confirm` argument would let a remote
    model approve its own plan."""
    if settings.fix.approval is not None:
        return set(settings.fix.approval)
    local = transport in ("stdio", "direct")
    return {"elicitation", "confirm", "policy"} if local else {"elicitation", "policy"}


async def ask_confirmation(message: str) -> bool | None:
    """Ask the caller's user to approve (MCP elicitation); None when the client cannot ask."""
    ask = _confirm.get()
    return None if ask is None else await ask(message)


def validate_limit(limit: int | None, default: int, maximum: int = 5000) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}, got {limit}.")
    return limit
