"""Leader election for the event watchers (watch.leader_election) on the real API server: one holder per Lease,
handed over at once on release, taken over from a holder gone silent only after the lease duration by the
observer's own clock, 409 for the loser of a race; a leader that cannot renew stops. Then the must-show: two
`cloudpilot watch` processes, the leader killed with SIGKILL, the other taking over from the stored cursors — every
fault one incident and one notification, none lost, none twice."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
import yaml
from pydantic import ValidationError

from errors import Forbidden, Unreachable
from runtime import Runtime
from settings import Settings, WatchSettings
from store import Store
from store.incidents import Incidents
from tests.agents.conftest import Recorder
from tests.cli.process import start
from tests.watch.faults import broken_pod, pull_failing, seen_again, warning
from watch.leader import Elector, lease_name, micro_time
from watch.pipeline import Pipeline
from watch.service import Service
from watch.takeover import Cursors

pytestmark = [pytest.mark.timeout(120)]

NAME = "cloudpilot-watch-test"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MERGE = "application/merge-patch+json"


@pytest.fixture
def home(settings: Settings):
    rt = Runtime(settings)
    yield rt.clusters.get()
    rt.close()


def elector(conn, namespace: str, who: str, **kw) -> Elector:
    return Elector(conn, namespace, NAME, who, duration=4, renew_deadline=3, retry=0.5, **kw)


def spec(api, namespace: str) -> dict:
    return api("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{NAME}")["spec"]


class Between:
    """The real connection as one elector sees it, with another elector's `move` made just before this one's first
    write: the other wins the race between this one's read and its write."""

    def __init__(self, conn, move) -> None:
        self.conn, self.move = conn, move

    def request(self, method: str, path: str, **kw):
        if method in ("POST", "PUT") and self.move is not None:
            move, self.move = self.move, None
            assert move()
        return self.conn.request(method, path, **kw)


class Partition:
    """The real connection until `cut`: then every request fails as an unreachable API server does."""

    def __init__(self, conn) -> None:
        self.conn, self.cut = conn, False

    def request(self, method: str, path: str, **kw):
        if self.cut:
            raise Unreachable("the API server did not answer (partitioned by the test)")
        return self.conn.request(method, path, **kw)


def test_of_two_electors_one_leads_and_a_release_hands_over_at_once(home, api, namespace):
    a, b = elector(home, namespace, "a"), elector(home, namespace, "b")
    assert a.try_acquire_or_renew() and a.leading
    assert not b.try_acquire_or_renew() and not b.leading and b.holder == "a"
    first = spec(api, namespace)
    assert (first["holderIdentity"], first["leaseDurationSeconds"], first["leaseTransitions"]) == ("a", 4, 0)
    assert MICRO_TIME.match(first["acquireTime"]) and MICRO_TIME.match(first["renewTime"])

    assert a.try_acquire_or_renew()  # a renewal: same acquireTime and transitions, a later renewTime
    renewed = spec(api, namespace)
    assert renewed["acquireTime"] == first["acquireTime"] and renewed["leaseTransitions"] == 0
    assert renewed["renewTime"] > first["renewTime"]
    assert not b.try_acquire_or_renew()

    assert a.release() and not a.leading
    freed = spec(api, namespace)
    assert freed.get("holderIdentity", "") == "" and freed["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew()  # free: no waiting for the duration
    taken = spec(api, namespace)
    assert (taken["holderIdentity"], taken["leaseDurationSeconds"], taken["leaseTransitions"]) == ("b", 4, 1)
    assert not a.try_acquire_or_renew() and a.holder == "b"
    assert not a.release()  # not the holder: nothing to give up


def test_a_silent_holder_is_taken_over_after_the_duration_by_the_observers_clock(home, api, namespace):
    hour_ago = micro_time(datetime.now(UTC) - timedelta(hours=1))
    api(
        "POST",
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
        {"metadata": {"name": NAME},
         "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 4, "acquireTime": hour_ago, "renewTime": hour_ago,
                  "leaseTransitions": 3}},
    )  # fmt: skip
    now = [100.0]
    b = elector(home, namespace, "b", clock=lambda: now[0])
    # an hour-old renewTime proves nothing (the holder's clock may be off): the wait starts when b first sees it
    assert not b.try_acquire_or_renew()
    now[0] = 103.9
    assert not b.try_acquire_or_renew()
    # the holder renews after all: the record changed, so the wait starts again
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{NAME}"
    api("PATCH", path, {"spec": {"renewTime": micro_time(datetime.now(UTC))}}, content_type=MERGE)
    now[0] = 104.5
    assert not b.try_acquire_or_renew()
    now[0] = 108.4
    assert not b.try_acquire_or_renew() and b.holder == "gone"
    now[0] = 108.5
    assert b.try_acquire_or_renew()
    taken = spec(api, namespace)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 4)
    assert taken["acquireTime"] == taken["renewTime"] != hour_ago


def test_of_two_electors_that_saw_the_lease_free_only_one_writes_it(home, api, namespace):
    a = elector(home, namespace, "a")
    b = elector(Between(home, a.try_acquire_or_renew), namespace, "b")
    assert not b.try_acquire_or_renew()  # both saw no Lease; a created it between b's read and b's create: 409
    assert spec(api, namespace)["holderIdentity"] == "a" and not b.leading

    assert a.release()
    c = elector(Between(home, a.try_acquire_or_renew), namespace, "c")
    assert not c.try_acquire_or_renew()  # both saw it free; a wrote first, so c's resourceVersion is stale: 409
    taken = spec(api, namespace)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("a", 1) and not c.leading
    assert c.try_acquire_or_renew() is False and c.holder == "a"  # and a fresh read shows the holder


async def test_a_leader_that_cannot_renew_stops_by_the_renew_deadline(home, namespace):
    link = Partition(home)
    a = elector(link, namespace, "a")
    assert await anyio.to_thread.run_sync(a.try_acquire_or_renew)
    link.cut = True
    with anyio.fail_after(60):  # a hang guard, not a measurement: hold() returns once the deadline has passed
        await a.hold()
    assert not a.leading and a.clock() >= a.renewed_at + a.renew_deadline


async def test_a_leader_stops_as_soon_as_it_sees_another_holder(home, api, namespace):
    a = elector(home, namespace, "a")
    assert await anyio.to_thread.run_sync(a.try_acquire_or_renew)
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{NAME}"
    api("PATCH", path, {"spec": {"holderIdentity": "intruder"}}, content_type=MERGE)
    with anyio.fail_after(60):
        await a.hold()
    assert not a.leading and a.holder == "intruder"


def test_without_rights_on_leases_the_error_names_the_missing_permission(settings, namespace):
    rt = Runtime(settings)
    try:
        with pytest.raises(Forbidden) as refused:  # `viewer`: a user of the test cluster with no RBAC at all
            elector(rt.clusters.get("viewer"), namespace, "v").try_acquire_or_renew()
    finally:
        rt.close()
    assert 'verb "get" on resource "leases" of API group "coordination.k8s.io"' in str(refused.value.hint)
    assert f'in namespace "{namespace}"' in str(refused.value.hint)


def test_lease_names_are_dns_labels_and_never_shared():
    assert lease_name("prod-eu") == "cloudpilot-watch-prod-eu"
    names = [lease_name(c) for c in ("Prod_EU", "prod-eu", "prod.eu", "x" * 100, "arn:aws:eks:eu:1:cluster/a", "")]
    assert len(set(names)) == len(names)
    assert all(LABEL.match(n) and len(n) <= 63 and n.startswith("cloudpilot-watch") for n in names)


def test_lease_timings_must_let_a_leader_stop_before_another_takes_over():
    WatchSettings(lease_duration_seconds=4, lease_renew_deadline_seconds=3, lease_retry_seconds=0.5)
    for bad in ({"lease_renew_deadline_seconds": 15}, {"lease_retry_seconds": 10}, {"lease_duration_seconds": 5}):
        with pytest.raises(ValidationError, match="lease_retry_seconds < lease_renew_deadline_seconds"):
            WatchSettings(**bad)


# -- taking over the watches ---------------------------------------------------------------------------------------
def watch_settings(namespace: str, who: str | None = None) -> dict:
    return {
        "leader_election": True,
        "lease_namespace": namespace,
        "lease_identity": who,
        "lease_duration_seconds": DURATION,
        "lease_renew_deadline_seconds": 3,
        "lease_retry_seconds": RETRY,
        "namespaces": [namespace],
        "sources": ["events", "pods"],
        "investigate": False,
    }


DURATION, RETRY = 4, 0.5
FAULTS = ("fault-a", "fault-b", "fault-c", "fault-d")  # names no controller makes: each Pod is its own root


def wait_for(check, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


async def until(check, what: str, timeout: float = 90.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.1)


def timeline_kinds(incidents: Incidents, root: str) -> list[str]:
    [found] = [i for i in incidents.list(limit=100) if i.root == root]
    return [kind for _, kind, _ in incidents.timeline(found.id, limit=500)]


def notes(incidents: Incidents, root: str, kind: str) -> list[str]:
    [found] = [i for i in incidents.list(limit=100) if i.root == root]
    return [text for _, k, text in incidents.timeline(found.id, limit=500) if k == kind]


@pytest.fixture
def shared(tmp_path: Path):
    """The store the watcher processes share (a SQLite file)."""
    store = Store(tmp_path / "shared.db")
    yield store
    store.close()


class Watcher:
    """One `cloudpilot watch` process; its log (stderr) in a file."""

    def __init__(self, who: str, config: Path, log: Path) -> None:
        self.who, self.config, self.log = who, config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = start("watch", "--config", str(self.config), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def opened(self) -> list[str]:
        """The roots of the incidents this process announced as opened (the log notifier's lines)."""
        return OPENED.findall(self.text())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(60)


OPENED = re.compile(r"notification \[\w+\] Incident #\d+ opened: (Pod [^\s:]+):")


@pytest.mark.timeout(300)
def test_two_watchers_one_leader_killed_the_other_takes_over_losing_and_doubling_nothing(
    cluster, api, namespace, tmp_path, shared
):
    context = yaml.safe_load(cluster.kubeconfig.read_text())["current-context"]
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease_name(context)}"
    watchers = {}
    for who in ("a", "b"):
        config = tmp_path / f"{who}.yaml"
        config.write_text(yaml.safe_dump({
            "k8s": {"kubeconfig": str(cluster.kubeconfig)},
            "store": {"path": str(shared.path)},
            "agents": {"checkpoint_path": str(tmp_path / f"{who}-threads.db")},
            "notify": {"log": True},
            "watch": watch_settings(namespace, f"watcher-{who}"),
        }))  # fmt: skip
        watchers[who] = Watcher(f"watcher-{who}", config, tmp_path / f"{who}.log")
    a, b = watchers["a"], watchers["b"]

    def holder() -> str:
        try:
            return str(api("GET", lease_path)["spec"].get("holderIdentity") or "")
        except RuntimeError:  # 404: no Lease yet
            return ""

    incidents, cursors = Incidents(shared), Cursors(shared)
    pods, events = f"/api/v1/namespaces/{namespace}/pods", f"/api/v1/namespaces/{namespace}/events"
    root = {i: f"Pod {namespace}/{FAULTS[i]}" for i in range(4)}
    try:
        a.start()
        wait_for(lambda: holder() == "watcher-a" or not a.alive(), "watcher-a to lead")
        assert a.alive(), a.text()
        b.start()
        wait_for(lambda: "watcher-b waits for it" in b.text() or not b.alive(), "watcher-b to start")
        wait_for(lambda: len(cursors.load(context)) == 2, "watcher-a listing both collections")

        # before: two faults (one with a Warning Event) handled by the leader, a; b only waits
        broken_pod(api, namespace, "fault-a")
        last_pod = broken_pod(api, namespace, "fault-b")
        last_event = warning(api, namespace, "fault-b", "fault-b.backoff")["metadata"]["resourceVersion"]
        wait_for(lambda: len(a.opened()) == 2 and notes(incidents, root[1], "updated"), "watcher-a's incidents")
        # and its cursors stored up to them: what a did is not done again
        wait_for(lambda: int(cursors.load(context).get(pods, 0)) >= int(last_pod)
                 and int(cursors.load(context).get(events, 0)) >= int(last_event), "watcher-a's cursors")  # fmt: skip
        assert holder() == "watcher-a" and "leads cluster" not in b.text()
        transitions = api("GET", lease_path)["spec"]["leaseTransitions"]

        # the leader dies without a word; meanwhile a new fault, the Event seen again, the first fault re-reported
        killed = time.monotonic()
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        broken_pod(api, namespace, "fault-c")
        seen_again(api, namespace, "fault-b.backoff")
        pull_failing(api, namespace, "fault-a", 'Back-off pulling image "shop/web:2.0-typo" (still)')

        wait_for(lambda: holder() == "watcher-b", "watcher-b to take over", timeout=120)
        takeover = time.monotonic() - killed
        print(f"watcher-b took over {takeover:.1f} s after watcher-a was killed (lease {DURATION} s, retry {RETRY} s)")
        assert takeover < DURATION + RETRY + 30  # generous: a loaded machine; the figure is printed
        assert api("GET", lease_path)["spec"]["leaseTransitions"] == transitions + 1

        # after: one more fault, and an Event about it to know b has read both collections up to here
        broken_pod(api, namespace, "fault-d")
        warning(api, namespace, "fault-d", "fault-d.backoff")
        wait_for(lambda: len(b.opened()) == 2 and notes(incidents, root[3], "updated"), "watcher-b's incidents")
        assert b.stop() == 0  # SIGTERM: a clean stop releases the Lease
        assert holder() == ""
    finally:
        for w in (a, b):
            if w.proc is not None and w.alive():
                w.stop(signal.SIGKILL)
        logs = f"--- a ---\n{a.text()[-4000:]}\n--- b ---\n{b.text()[-4000:]}"

    # every fault one incident and one notification: a told the first two, b the two after; none twice
    assert sorted(i.root for i in incidents.list(limit=100)) == sorted(root.values()), logs
    assert (a.opened(), b.opened()) == ([root[0], root[1]], [root[2], root[3]]), logs
    for i in range(4):
        assert timeline_kinds(incidents, root[i]).count("opened") == 1
        assert timeline_kinds(incidents, root[i]).count("notified") == 1
    # b knew what a had seen as of its cursors: fault-a reported again in the same state is no news, and the Event
    # seen again is counted against what a had counted, not taken as a new signal
    assert notes(incidents, root[0], "updated") == [], logs
    assert len(notes(incidents, root[1], "updated")) == 1, logs
    assert "watcher-b leads cluster" in b.text() and "2 open incidents taken over, 2 watches resume" in b.text()


async def test_a_new_leader_replaying_what_the_last_one_took_opens_and_tells_nothing_again(api, namespace, settings):
    """As if the leader had died after handling events but before storing its cursors: the next leader reads those
    events again, and the incidents taken over from the store keep them from becoming new incidents or messages."""
    rt = Runtime(settings.model_copy(update={
        "watch": WatchSettings(**watch_settings(namespace)),
        "notify": settings.notify.model_copy(update={"log": False}),
    }))  # fmt: skip
    cluster, cursors, incidents = rt.clusters.default_name(), Cursors(rt.store), Incidents(rt.store)
    root = {i: f"Pod {namespace}/{FAULTS[i]}" for i in range(3)}
    try:
        first = Service(rt, Pipeline(rt, sinks=[(told_a := Recorder())]))
        first.identity = "a"
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(first.run, http=False))
            await until(lambda: len(cursors.load(cluster)) == 2, "a leading and listing")
            before = cursors.load(cluster)
            await anyio.to_thread.run_sync(broken_pod, api, namespace, "fault-a")
            await anyio.to_thread.run_sync(broken_pod, api, namespace, "fault-b")
            await anyio.to_thread.run_sync(warning, api, namespace, "fault-b", "fault-b.backoff")
            await until(lambda: len(told_a.sent) == 2 and notes(incidents, root[1], "updated"), "a's incidents")
            tg.cancel_scope.cancel()  # a clean stop: the Lease is released, the cursors stored
        assert cursors.load(cluster) != before
        cursors.save(cluster, before)  # ... as if they had not been

        second = Service(rt, Pipeline(rt, sinks=[(told_b := Recorder())]))
        second.identity = "b"
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(second.run, http=False))
            await until(lambda: cluster in second.terms, "b leading")
            await anyio.to_thread.run_sync(broken_pod, api, namespace, "fault-c")
            await anyio.to_thread.run_sync(warning, api, namespace, "fault-c", "fault-c.backoff")
            await until(lambda: told_b.sent and notes(incidents, root[2], "updated"), "b's incident")
            tg.cancel_scope.cancel()
    finally:
        rt.close()
    assert [n.title for n in told_a.sent] == [f"Incident #{n} opened: {root[i]}" for n, i in ((1, 0), (2, 1))]
    assert [n.title for n in told_b.sent] == [f"Incident #3 opened: {root[2]}"]
    assert sorted(i.root for i in incidents.list(limit=100)) == sorted(root.values())
    assert all(timeline_kinds(incidents, r).count("opened") == 1 for r in root.values())


async def test_a_leader_that_loses_its_lease_stops_at_once_and_later_resumes_where_it_stopped(api, namespace, settings):
    rt = Runtime(settings.model_copy(update={
        "watch": WatchSettings(**watch_settings(namespace)),
        "notify": settings.notify.model_copy(update={"log": False}),
    }))  # fmt: skip
    cluster, cursors, incidents = rt.clusters.default_name(), Cursors(rt.store), Incidents(rt.store)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease_name(cluster)}"
    try:
        service = Service(rt, Pipeline(rt, sinks=[(told := Recorder())]))
        service.identity = "a"
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(service.run, http=False))
            await until(lambda: len(cursors.load(cluster)) == 2, "a leading and listing")
            await anyio.to_thread.run_sync(broken_pod, api, namespace, "fault-a")
            await until(lambda: len(told.sent) == 1, "a's first incident")
            # another process holds the Lease now (as if a's renewals had not reached the API server in time)
            taken = {"spec": {"holderIdentity": "intruder", "renewTime": micro_time(datetime.now(UTC))}}
            await anyio.to_thread.run_sync(partial(api, "PATCH", lease_path, taken, content_type=MERGE))
            await until(lambda: not service.watches and cluster not in service.terms, "a stopping its watches")
            assert not service.pipeline.grouper.open  # what it knew of the cluster is the store's again
            # meanwhile: a new fault, and the first one seen again; the intruder never renews, so a takes over
            await anyio.to_thread.run_sync(broken_pod, api, namespace, "fault-b")
            await anyio.to_thread.run_sync(pull_failing, api, namespace, "fault-a", "Back-off pulling image (still)")
            await until(lambda: len(told.sent) == 2, "a leading again and catching up")
            tg.cancel_scope.cancel()
    finally:
        rt.close()
    assert [n.title for n in told.sent] == [f"Incident #{i} opened: Pod {namespace}/{FAULTS[i - 1]}" for i in (1, 2)]
    assert notes(incidents, f"Pod {namespace}/fault-a", "updated") == []  # known state, resumed from the cursor
    assert api("GET", lease_path)["spec"].get("holderIdentity", "") == ""  # released on the clean stop


def test_a_watcher_without_rights_on_leases_exits_with_the_missing_permission(cluster, namespace, tmp_path):
    """`cloudpilot watch` as a user with no RBAC: one line naming what to grant and status 1, not a traceback."""
    config = tmp_path / "viewer.yaml"
    config.write_text(yaml.safe_dump({
        "k8s": {"kubeconfig": str(cluster.kubeconfig), "context": "viewer"},
        "store": {"path": str(tmp_path / "s.db")},
        "agents": {"checkpoint_path": str(tmp_path / "threads.db")},
        "watch": watch_settings(namespace, "watcher-viewer"),
    }))  # fmt: skip
    proc = start("watch", "--config", str(config), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == 1, text[-2000:]
    assert "cloudpilot watch: " in text and '"leases"' in text and "Traceback" not in text
