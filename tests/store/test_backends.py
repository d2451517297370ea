"""The store's two backends behind one interface: rows, migrations run once by replicas starting together, atomic
claims across processes' connections, and a URL whose password never shows."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.approvals import Approvals
from agents.trace import Trace
from bots.chat import MIGRATIONS as CHAT_MIGRATIONS
from cli import clusters as clusters_cli
from cli import tokens as tokens_cli
from errors import Unreachable
from guard.auth import Tokens
from notifiers.outbox import Outbox
from settings import Settings
from store import AuditLog, ClusterRecord, Store, open_store
from store.checkpoints import postgres_saver
from store.incidents import Incidents
from store.migrations import migrate
from store.postgres import PostgresStore, translate
from tests.serving import free_port
from tests.store.postgres import Postgres
from watch.takeover import Cursors

pytestmark = pytest.mark.stores
COMPONENTS = {"clusters": 2, "audit": 3, "approvals": 1, "agent_steps": 1, "outbox": 1, "incidents": 1, "api_tokens": 1}
COMPONENTS |= {"watch_cursors": 1, "chat_approvals": 1}


def open_everything(store: Store) -> None:
    """What a replica does when it starts: every owner of a table opens it."""
    AuditLog(store)
    Approvals(store)
    Trace(store)
    Outbox(store, [])
    Incidents(store)
    Tokens(store)
    Cursors(store)
    migrate(store, "chat_approvals", CHAT_MIGRATIONS)  # what bots.chat.Bot opens (it needs a whole team)


def recorded(store: Store) -> Counter[tuple[str, int]]:
    return Counter((r["component"], int(r["version"])) for r in store.execute("SELECT * FROM schema_migrations"))


def test_rows_read_by_name_and_position_and_round_trip(store: Store) -> None:
    log = AuditLog(store)
    entry = log.record("planned", plan_id="p-1", object="Deployment shop/web", result="100% done? yes; it's 'quoted'")
    assert log.entry(entry) == log.entries(object="%")[0]
    assert log.entries(object="shop/web")[0].result == "100% done? yes; it's 'quoted'"
    rows = store.execute("SELECT id, plan_id, result FROM audit WHERE plan_id = ?", ("p-1",))
    assert rows[0][0] == rows[0]["id"] == entry
    assert dict(rows[0]) == {"id": entry, "plan_id": "p-1", "result": "100% done? yes; it's 'quoted'"}
    assert list(rows[0]) == [entry, "p-1", "100% done? yes; it's 'quoted'"]

    incidents = Incidents(store)
    opened = time.time()
    values = {"cluster": "c", "root": "shop/web", "status": "open", "severity": "warning", "opened_at": opened,
              "last_at": opened, "resolved_at": None, "reasons": {"BackOff": 3}, "objects": ["Pod shop/web-1"],
              "events": 3}  # fmt: skip
    ref = incidents.save(0, values)
    found = incidents.get(ref)
    assert found is not None and found.opened_at == opened  # full double precision (not PostgreSQL's 4-byte real)
    assert (found.reasons, found.resolved_at, found.flapping) == ({"BackOff": 3}, None, False)
    for n in range(3):
        incidents.note(ref, "signal", f"event {n}", at=opened + n)
    assert [t[2] for t in incidents.timeline(ref)] == ["event 0", "event 1", "event 2"]
    assert incidents.list("open")[0].id == ref and incidents.list(None)[0].id == ref
    assert incidents.acknowledge(ref, "alice") and not incidents.acknowledge(ref, "bob")

    store.add_cluster(ClusterRecord(name="prod", server="https://10.0.0.1", token="t", trusted=True))
    with pytest.raises(KeyError):
        store.add_cluster(ClusterRecord(name="prod", server="https://10.0.0.2"))
    store.add_cluster(ClusterRecord(name="prod", server="https://10.0.0.2"), replace=True)
    assert [(c.name, c.server, c.trusted) for c in store.list_clusters()] == [("prod", "https://10.0.0.2", False)]
    assert store.remove_cluster("prod") and not store.remove_cluster("prod")


def test_every_component_is_migrated_once_however_often_it_is_opened(store: Store) -> None:
    open_everything(store)
    open_everything(store)
    assert recorded(store) == Counter({(c, v): 1 for c, last in COMPONENTS.items() for v in range(1, last + 1)})


def test_migrations_run_once_when_four_replicas_start_together(store_settings: dict[str, Any]) -> None:
    """Four stores (each with its own connections, as four replicas have) open one fresh database at the same
    moment: no error, and each migration recorded once."""
    settings = Settings(store=store_settings)
    start = threading.Barrier(4)

    def replica() -> Counter[tuple[str, int]]:
        start.wait(timeout=60)
        store = open_store(settings)
        try:
            open_everything(store)
            return recorded(store)
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(lambda _: replica(), range(4)))
    expected = Counter({(c, v): 1 for c, last in COMPONENTS.items() for v in range(1, last + 1)})
    assert seen == [expected] * 4


def test_an_atomic_claim_is_won_by_exactly_one_of_two_replicas(store_settings: dict[str, Any]) -> None:
    """Two stores race for the same plans (apply) and approvals (decide): each is won exactly once."""
    settings = Settings(store=store_settings)
    stores = [open_store(settings), open_store(settings)]
    try:
        log, approvals = AuditLog(stores[0]), Approvals(stores[0])
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
        ids = [f"p-{n}" for n in range(40)]
        tickets = []
        for plan_id in ids:
            log.save_plan(plan_id, "c", expires, {"items": []})
            tickets.append(approvals.request("t-1", {"plan_id": plan_id, "expires_at": expires}, "alice", 60).id)
        start = threading.Barrier(2)

        def replica(store: Store) -> tuple[list[str], list[str]]:
            mine_log, mine_approvals = AuditLog(store), Approvals(store)
            start.wait(timeout=60)
            plans = [p for p in ids if mine_log.set_plan_status(p, "applying", expect="planned")]
            decided = [t for t in tickets if mine_approvals.claim(t, True, f"{id(store)}", "ok")]
            return plans, decided

        with ThreadPoolExecutor(2) as pool:
            (plans_a, decided_a), (plans_b, decided_b) = pool.map(replica, stores)
        assert sorted(plans_a + plans_b) == sorted(ids)
        assert sorted(decided_a + decided_b) == sorted(tickets)
    finally:
        for s in stores:
            s.close()


def test_an_outbox_row_is_leased_by_one_replica(store_settings: dict[str, Any]) -> None:
    settings = Settings(store=store_settings)
    stores = [open_store(settings), open_store(settings)]
    try:
        now = time.time()
        Outbox(stores[0], [])
        for n in range(30):
            stores[0].execute(
                "INSERT INTO outbox (dest, dedup_key, notification, status, due, created, last_seen) "
                "VALUES (?,?,?,'queued',?,?,?)",
                ("slack:C1", f"k{n}", "{}", now, now, now),
            )
        rows = stores[0].execute("SELECT id FROM outbox")
        start = threading.Barrier(2)

        def lease(store: Store) -> list[int]:
            start.wait(timeout=60)
            won = []
            for row in rows:
                claimed = store.execute(
                    "UPDATE outbox SET lease = ? WHERE id = ? AND lease < ? RETURNING id", (now + 60, row["id"], now)
                )
                won += [int(claimed[0]["id"])] if claimed else []
            return won

        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lease, stores)
        assert sorted(a + b) == sorted(int(r["id"]) for r in rows) and not set(a) & set(b)
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_a_file_from_before_migrations_is_upgraded(tmp_path: Path, store_backend: str) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE clusters (name TEXT PRIMARY KEY, server TEXT NOT NULL, token TEXT, kubeconfig TEXT,
            context TEXT, ca_cert TEXT, insecure_skip_tls_verify INTEGER NOT NULL DEFAULT 0,
            description TEXT NOT NULL DEFAULT '', added_at TEXT NOT NULL);
        INSERT INTO clusters (name, server, added_at) VALUES ('old', 'https://10.0.0.9', '2025-01-01');
        CREATE TABLE incident_timeline (incident_id INTEGER NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
            text TEXT NOT NULL);
        CREATE TABLE approvals (id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, plan_id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL, requested_by TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
            decided_by TEXT NOT NULL DEFAULT '', decided_at TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '', summary TEXT NOT NULL);
        INSERT INTO approvals (id, thread_id, plan_id, status, requested_by, created_at, expires_at, summary)
            VALUES ('ap-old', 't', 'p-old', 'pending', 'alice', '2025-01-01', '2999-01-01', '{}');
        """
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        open_everything(store)
        assert store.get_cluster("old") == ClusterRecord(name="old", server="https://10.0.0.9", added_at="2025-01-01")
        assert Approvals(store).get("ap-old") is not None
        incidents = Incidents(store)  # an old timeline has no id column: SQLite's rowid orders it
        for n in range(3):
            incidents.note(7, "signal", f"event {n}")
        assert [t[2] for t in incidents.timeline(7)] == ["event 0", "event 1", "event 2"]
        assert set(recorded(store).values()) == {1}
    finally:
        store.close()


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
async def test_team_checkpoint_tables_are_set_up_once_by_replicas_starting_together(
    store_settings: dict[str, Any], store_backend: str
) -> None:
    url = store_settings["url"]
    versions: list[int] = []

    async def replica() -> None:
        async with postgres_saver(url) as saver, saver.conn.cursor() as cur:
            await cur.execute("SELECT v FROM checkpoint_migrations")
            versions.append(len(await cur.fetchall()))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(replica)
    assert len(set(versions)) == 1 and versions[0] > 0


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
def test_the_url_password_never_shows(postgres: Postgres, store_backend: str) -> None:
    password = "pa55-" + "x" * 12  # trust auth on loopback accepts any password: it only has to stay hidden
    url = postgres.database().replace("postgres@", f"postgres:{password}@")
    settings = Settings(store={"url": url})
    shown: list[Callable[[], Any]] = [
        lambda: repr(settings),
        lambda: str(settings.store),
        lambda: settings.model_dump_json(),
        lambda: json.dumps(settings.model_dump(mode="json")),
    ]
    store = open_store(settings)
    try:
        assert isinstance(store, PostgresStore)
        shown += [lambda: repr(store), lambda: str(store)]
        for text in (f() for f in shown):
            assert password not in text
    finally:
        store.close()
    for broken in (
        f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/db",  # nobody listens
        url.rsplit("/", 1)[0] + "/no_such_db",  # no such database
    ):
        with pytest.raises(Unreachable) as caught:
            open_store(Settings(store={"url": broken}))
        assert password not in str(caught.value) and "store.url" in str(caught.value)


def test_sql_is_translated_for_psycopg() -> None:
    assert translate("SELECT '?' , x FROM t WHERE a = ? AND b LIKE '%x%'") == (
        "SELECT '?' , x FROM t WHERE a = %s AND b LIKE '%%x%%'"
    )
    assert translate("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL)", bound=False) == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at DOUBLE PRECISION)"
    )


def test_tokens_and_watch_cursors_round_trip(store: Store) -> None:
    tokens = Tokens(store)
    secret, _ = tokens.create("ops", "write", timedelta(days=1))
    with pytest.raises(KeyError):
        tokens.create("ops", "read")
    checked = tokens.check(secret)
    assert checked is not None and checked.name == "ops" and checked.scopes == {"read", "write"}
    assert tokens.configured() and [t.name for t in tokens.list()] == ["ops"]
    assert tokens.revoke("ops") and not tokens.revoke("ops") and tokens.check(secret) is None

    cursors = Cursors(store)
    cursors.save("prod", {"/api/v1/events": "100", "/apis/apps/v1/deployments": "7"})
    cursors.save("prod", {"/api/v1/events": "250"})
    assert cursors.load("prod") == {"/api/v1/events": "250", "/apis/apps/v1/deployments": "7"}
    assert cursors.load("other") == {}


def test_a_schema_script_run_by_replicas_at_once_creates_its_tables_once(store_settings: dict[str, Any]) -> None:
    """`executescript` (what an owner of a table without numbered migrations calls) from four replicas at once:
    PostgreSQL's `IF NOT EXISTS` alone lets two of them collide in its catalogue; the store takes a lock."""
    settings = Settings(store={**store_settings, "pool_size": 2})
    script = "CREATE TABLE IF NOT EXISTS race (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL); "
    script += "CREATE INDEX IF NOT EXISTS race_at ON race (at)"
    start = threading.Barrier(4)

    def replica(_: int) -> int:
        store = open_store(settings)
        try:
            if isinstance(store, PostgresStore):
                assert store.pool.max_size == 2  # store.pool_size
            start.wait(timeout=60)
            store.executescript(script)
            return int(store.execute("INSERT INTO race (at) VALUES (?) RETURNING id", (time.time(),))[0]["id"])
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(replica, range(4)))
    assert sorted(ids) == [1, 2, 3, 4]


def test_the_operator_commands_use_the_store_the_settings_name(
    store_settings: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cloudpilot.yaml"
    config.write_text(json.dumps({"store": {k: str(v) for k, v in store_settings.items()}}))
    assert clusters_cli.main(["list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    where = "postgresql://postgres@127.0.0.1:" if "url" in store_settings else str(store_settings["path"])
    assert "No clusters are registered in " + where in listed, listed
    assert tokens_cli.main(["create", "ci-bot", "--scope", "read", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    store = open_store(Settings(store=store_settings))
    try:
        checked = Tokens(store).check(token)  # the server, opening the same store, accepts it
        assert checked is not None and checked.name == "ci-bot"
    finally:
        store.close()
