"""Runbooks: every finding code has one, search ranks the right one first, operator folders are read safely, and
the tools answer through the guarded pipeline. No cluster needed."""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engines.diagnosis
from engines import runbooks as engine
from guard.mask import mask_text
from guard.pipeline import Answer, Pipeline
from runbooks import SHIPPED
from runtime import LOCAL, Runtime
from settings import Settings
from tests.security.test_fuzz import FORBIDDEN_IN_ANSWERS
from tools.catalogue import enabled_tools, load_all

# String constants of the diagnosis engine shaped like finding codes that are not codes: Istio TLS modes.
NOT_CODES = {"ISTIO_MUTUAL", "OPTIONAL_MUTUAL"}
CODE_SHAPE = re.compile(r"IST\d{4}|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
SECTIONS = ("Symptoms", "Confirm with CloudPilot", "Likely causes", "Fix", "Verify")


def diagnosis_codes() -> set[str]:
    """Every finding code the diagnosis engine can report, read from its source: each code is a string literal
    there (`code="POD_CRASHLOOP"`, `"IST0101"` passed to a helper, a dict of node conditions to codes)."""
    codes: set[str] = set()
    for info in pkgutil.iter_modules(engines.diagnosis.__path__):
        module = importlib.import_module(f"engines.diagnosis.{info.name}")
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE_SHAPE.fullmatch(node.value):
                codes.add(node.value)
    return codes - NOT_CODES


def family(code: str) -> str:
    """IST0101 → IST (istioctl's analyzer codes); POD_CRASHLOOP → POD; ISTIO_DR_CONFLICT → ISTIO."""
    return "IST" if re.fullmatch(r"IST\d{4}", code) else code.split("_", 1)[0]


@pytest.fixture(scope="module")
def shipped() -> engine.Library:
    return engine.load()


# -- coverage -------------------------------------------------------------------------------------------------
def test_the_engine_code_list_is_read_completely() -> None:
    codes = diagnosis_codes()
    assert {"POD_CRASHLOOP", "NODE_MEMORY_PRESSURE", "IST0101", "ISTIO_SUBSET_NO_PODS", "PV_RELEASED"} <= codes
    assert len(codes) >= 60
    assert {family(c) for c in codes} >= {"POD", "DEPLOY", "STS", "DS", "JOB", "CRONJOB", "SVC", "IST", "ISTIO"}


def test_every_finding_code_family_has_a_runbook(shipped: engine.Library) -> None:
    families = {family(c) for c in diagnosis_codes()}
    covered = {family(c) for r in shipped.runbooks.values() if r.source == "shipped" for c in r.codes}
    assert families - covered == set(), "write a runbook in runbooks/ for these finding code families"


def test_every_finding_code_is_listed_by_a_runbook(shipped: engine.Library) -> None:
    missing = diagnosis_codes() - shipped.codes
    assert missing == set(), "add these codes to the `codes:` line of the runbook that covers them"


def test_runbooks_list_only_codes_the_engine_reports(shipped: engine.Library) -> None:
    assert shipped.codes - diagnosis_codes() == set(), "a runbook's codes: line names a code diagnosis never reports"


def test_shipped_runbooks_are_complete_and_name_real_tools(shipped: engine.Library) -> None:
    tools = set(load_all())
    ours = [r for r in shipped.runbooks.values() if r.source == "shipped"]
    assert 18 <= len(ours) == len(list(SHIPPED.glob("*.md")))
    for rb in ours:
        headings = [s.heading for s in rb.sections]
        assert rb.title != rb.id and rb.codes, rb.id
        assert all(h in headings for h in SECTIONS), (rb.id, headings)
        called = set(re.findall(r"\b([a-z]+(?:_[a-z]+)*)\((?!s\))", rb.text))  # diagnose(...), not node(s)
        named = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", rb.text))  # `fix_plan`, `set_resources`
        assert called and called | named <= tools, (rb.id, (called | named) - tools)
        assert 30 <= len(rb.text.splitlines()) <= 80, (rb.id, len(rb.text.splitlines()))
        # what a tool answer may not contain (the fuzzer's list), and text masking would garble
        assert not [bad for bad in FORBIDDEN_IN_ANSWERS if bad in rb.text], rb.id
        assert mask_text(rb.text) == rb.text, rb.id


# -- ranking --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("pods keep restarting with CrashLoopBackOff after deploy", "pod-crashloop"),
        ("container killed with exit code 137 out of memory", "pod-oomkilled"),
        ("ImagePullBackOff from our private registry", "pod-image-pull"),
        ("pod pending: 0/3 nodes are available, Insufficient cpu", "pod-unschedulable"),
        ("service has no endpoints, clients get connection refused", "service-no-endpoints"),
        ("network policy makes requests time out", "networkpolicy"),
        ("kubectl drain hangs: cannot evict pod, disruption budget", "pdb"),
        ("istio 503 no healthy upstream for the v2 subset", "istio-routing-conflicts"),
        ("persistent volume claim stays pending, storage class not found", "pvc-pending"),
    ],
)
def test_a_question_ranks_its_runbook_first(shipped: engine.Library, question: str, expected: str) -> None:
    hits = shipped.search(question, limit=3).hits
    assert hits and hits[0].runbook.id == expected, [(h.runbook.id, h.score) for h in hits]
    assert hits[0].excerpt and len(hits[0].excerpt) <= engine.EXCERPT_CHARS + 2


def test_the_excerpt_is_the_passage_closest_to_the_question(shipped: engine.Library) -> None:
    hit = shipped.search("what does exit code 127 mean", limit=1).hits[0]
    assert hit.runbook.id == "pod-crashloop"
    assert "127" in hit.excerpt and hit.excerpt.startswith("## Likely causes")


@pytest.mark.parametrize("code", sorted(diagnosis_codes()))
def test_a_question_naming_a_code_ranks_that_codes_runbook_first(shipped: engine.Library, code: str) -> None:
    found = shipped.search(f"diagnose reported {code.lower()} in namespace shop, what now?", limit=3)
    assert found.codes == (code,)
    first = found.hits[0]
    assert code in first.runbook.codes and first.matched_codes == (code,) and first.score > engine.CODE_BOOST
    assert code in shipped.search("", codes=[code]).hits[0].excerpt  # the passage that names the code


def test_a_named_code_outranks_a_question_worded_for_another_runbook(shipped: engine.Library) -> None:
    question = "pods keep restarting with CrashLoopBackOff after deploy"
    assert shipped.search(question).hits[0].runbook.id == "pod-crashloop"
    assert shipped.search(f"{question} (diagnose: POD_OOMKILLED)").hits[0].runbook.id == "pod-oomkilled"
    assert shipped.search(question, codes=["IST0113"]).hits[0].runbook.id == "istio-mtls"


def test_codes_alone_find_their_runbook_and_unknown_codes_are_named(shipped: engine.Library) -> None:
    found = shipped.search("", codes=["pod_oomkilled", "NOT_A_REAL_CODE"])
    assert [h.runbook.id for h in found.hits] == ["pod-oomkilled"]
    assert found.unknown_codes == ("NOT_A_REAL_CODE",)
    assert shipped.search("what does pods_list show for a bad_name pod").codes == ()  # snake_case, not codes


@pytest.mark.parametrize("question", ["what should I cook for dinner tonight", "asdf qwer zxcv", "the", ""])
def test_an_unrelated_question_finds_nothing(shipped: engine.Library, question: str) -> None:
    assert shipped.search(question).hits == []


# -- operator folders -------------------------------------------------------------------------------------------
FAILOVER = """---
title: Payments database failover
codes: POD_CRASHLOOP
---
# Payments database failover

## Symptoms
payments-api logs `connection to primary lost`; the Patroni cluster elects a new leader.

## Fix
Run the team's failover checklist and page the database on-call.
"""


def test_an_operator_folder_adds_runbooks_that_are_found(tmp_path: Path) -> None:
    team = tmp_path / "team-runbooks"
    team.mkdir()
    (team / "payments-db-failover.md").write_text(FAILOVER)
    (team / "notes.txt").write_text("payments database failover patroni")  # not a runbook: not *.md
    lib = engine.load([team])
    hits = lib.search("payments database lost its primary, patroni failover").hits
    assert hits[0].runbook.id == "payments-db-failover"
    assert hits[0].runbook.source == "team-runbooks" and hits[0].runbook.codes == ("POD_CRASHLOOP",)
    assert "notes" not in lib.runbooks and "pod-crashloop" in lib.runbooks  # shipped ones are still there
    by_code = [h.runbook.id for h in lib.search("", codes=["POD_CRASHLOOP"]).hits]
    assert set(by_code) == {"pod-crashloop", "payments-db-failover"}


def test_a_runbook_without_header_takes_its_title_and_codes_from_the_text(tmp_path: Path) -> None:
    (tmp_path / "dns.md").write_text("# CoreDNS timeouts\ncodes: svc_no_ready_pods\n\n## Symptoms\nSERVFAIL\n")
    rb = engine.load([tmp_path], shipped=None).get("dns")
    assert rb is not None and rb.title == "CoreDNS timeouts" and rb.codes == ("SVC_NO_READY_PODS",)
    assert [s.heading for s in rb.sections] == ["CoreDNS timeouts", "Symptoms"]


def test_an_operator_runbook_replaces_the_shipped_one_of_the_same_id(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "pod-crashloop.md").write_text("---\ntitle: Our crash loop procedure\ncodes: POD_CRASHLOOP\n---\n")
    (second / "pod-crashloop.md").write_text("---\ntitle: Someone else's\ncodes: POD_CRASHLOOP\n---\n")
    rb = engine.load([first, second]).get("pod-crashloop")
    assert rb is not None and rb.title == "Our crash loop procedure" and rb.source == "first"


def test_the_index_is_reused_until_a_file_changes(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    page.write_text("# Alpha\ncodes: NODE_CORDONED\n")
    lib = engine.load([tmp_path], shipped=None)
    assert engine.load([tmp_path], shipped=None) is lib
    page.write_text("# Alpha two\ncodes: NODE_CORDONED\n")
    os.utime(page, ns=(1, 1))  # a different mtime even on a coarse clock
    changed = engine.load([tmp_path], shipped=None)
    assert changed is not lib and changed.runbooks["a"].title == "Alpha two"
    (tmp_path / "b.md").write_text("# Beta\n")
    assert set(engine.load([tmp_path], shipped=None).runbooks) == {"a", "b"}
    page.unlink()
    assert set(engine.load([tmp_path], shipped=None).runbooks) == {"b"}


def test_symlinks_out_of_the_folder_and_subfolders_are_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Private\nkubeconfig of production\n")
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "real.md").write_text("# Real\nA runbook about disks.\n")
    (folder / "alias.md").symlink_to(folder / "real.md")  # inside the folder: followed
    (folder / "escape.md").symlink_to(outside / "secret.md")
    (folder / "up.md").symlink_to(Path("..") / "outside" / "secret.md")
    (folder / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (folder / "linked-dir.md").symlink_to(outside)
    nested = folder / "nested"
    nested.mkdir()
    (nested / "deep.md").write_text("# Deep\n")
    with caplog.at_level(logging.WARNING, logger="engines.runbooks"):
        lib = engine.load([folder], shipped=None)
    assert set(lib.runbooks) == {"real", "alias"}
    assert all("Private" not in r.text for r in lib.runbooks.values())
    assert any("escape.md skipped: it is a link to a file outside the folder" in p for p in lib.problems)
    assert any("up.md skipped" in p for p in lib.problems) and any("dangling.md skipped" in p for p in lib.problems)
    assert "escape.md skipped" in caplog.text


def test_oversized_files_and_fifos_are_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = "disk pressure evicts pods\n"
    (tmp_path / "fits.md").write_text(line * (engine.MAX_BYTES // len(line)))
    (tmp_path / "huge.md").write_text("x" * (engine.MAX_BYTES + 1))
    os.mkfifo(tmp_path / "pipe.md")  # reading it would block forever
    with caplog.at_level(logging.WARNING, logger="engines.runbooks"):
        lib = engine.load([tmp_path], shipped=None)
    assert set(lib.runbooks) == {"fits"}
    assert f"huge.md skipped: {engine.MAX_BYTES + 1} bytes, more than {engine.MAX_BYTES}" in caplog.text
    assert "pipe.md skipped: not a regular file" in caplog.text


def test_a_missing_folder_is_reported_and_the_rest_still_works(tmp_path: Path) -> None:
    lib = engine.load([tmp_path / "absent"])
    assert "pod-crashloop" in lib.runbooks
    assert lib.problems and "absent cannot be read" in lib.problems[0]


# -- the tools, through the guarded pipeline ---------------------------------------------------------------------
@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    team = tmp_path / "team"
    team.mkdir()
    (team / "payments-db-failover.md").write_text(FAILOVER)
    rt = Runtime(Settings(store={"path": tmp_path / "db"}, agents={"runbook_folders": [team]}))
    yield Pipeline(rt, enabled_tools(rt.settings))
    rt.close()


async def ask(pipeline: Pipeline, name: str, args: dict[str, Any]) -> Answer:
    return await pipeline.call(name, args, principal=LOCAL, client="test")


async def test_the_tools_are_read_only_and_in_the_runbooks_toolset(pipeline: Pipeline) -> None:
    specs = {s.name: s for s in pipeline.specs}
    for name in ("runbooks_search", "runbook_get"):
        assert specs[name].toolset == "runbooks" and specs[name].access == "read", name


async def test_search_answers_compact_text_citing_runbook_ids(pipeline: Pipeline) -> None:
    answer = await ask(pipeline, "runbooks_search", {"question": "pods in CrashLoopBackOff after a deploy"})
    assert not answer.is_error, answer.text
    assert answer.structured is not None and answer.structured["hits"][0]["id"] == "pod-crashloop"
    assert answer.text.startswith("runbooks for 'pods in CrashLoopBackOff after a deploy':")
    assert "\n[pod-crashloop] Pod in CrashLoopBackOff" in answer.text
    assert 'runbook_get(runbook_id="pod-crashloop")' in answer.text
    assert len(answer.text) <= 6 * (engine.EXCERPT_CHARS + 200)


async def test_search_by_code_finds_the_operators_runbook_too(pipeline: Pipeline) -> None:
    answer = await ask(pipeline, "runbooks_search", {"question": "primary lost", "codes": ["POD_CRASHLOOP"]})
    assert not answer.is_error, answer.text
    assert answer.structured is not None
    ids = [h["id"] for h in answer.structured["hits"]]
    assert set(ids) == {"pod-crashloop", "payments-db-failover"}
    assert "[payments-db-failover] Payments database failover — codes POD_CRASHLOOP;" in answer.text
    assert "; team\n" in answer.text  # the folder's name, never its path on the server
    assert str(pipeline.runtime.settings.agents.runbook_folders[0]) not in answer.text


async def test_get_returns_the_whole_runbook(pipeline: Pipeline) -> None:
    answer = await ask(pipeline, "runbook_get", {"runbook_id": "pod-oomkilled"})
    assert not answer.is_error, answer.text
    assert answer.text.startswith("runbook pod-oomkilled (shipped): Container OOMKilled")
    assert "\ncodes: POD_OOMKILLED\n" in answer.text and "## Verify" in answer.text
    assert "title:" not in answer.text  # the header is shown once, not again with the body
    assert answer.structured is not None and answer.structured["complete"] is True


@pytest.mark.parametrize("bad", ["../x", "../../etc/passwd", "/etc/passwd", "runbooks/pod-crashloop", ".hidden", ""])
async def test_get_refuses_paths_and_points_to_search(pipeline: Pipeline, bad: str) -> None:
    answer = await ask(pipeline, "runbook_get", {"runbook_id": bad})
    assert answer.is_error and "is not a runbook id" in answer.text, answer.text
    assert "Use runbooks_search to find runbook ids." in answer.text


async def test_get_of_an_unknown_id_suggests_close_ones(pipeline: Pipeline) -> None:
    answer = await ask(pipeline, "runbook_get", {"runbook_id": "pod-crashloop.md"})
    assert answer.is_error and "There is no runbook 'pod-crashloop.md'; close: pod-crashloop." in answer.text
    assert "runbooks_search" in answer.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"question": "x" * 2_001}, "question is 2001 characters; at most 2000."),
        ({"question": "   "}, "Pass a question (the symptom) or finding codes"),
        ({"question": "oom", "limit": 21}, "limit must be between 1 and 20, got 21."),
        ({"question": "oom", "codes": ["POD OOM; rm -rf /"]}, "codes entry 'POD OOM; rm -rf /' is not a finding code"),
        ({"question": "oom", "codes": ["POD_OOMKILLED"] * 21}, "codes holds 21 entries; at most 20."),
    ],
)
async def test_search_refuses_oversized_or_malformed_input(
    pipeline: Pipeline, args: dict[str, Any], message: str
) -> None:
    answer = await ask(pipeline, "runbooks_search", args)
    assert answer.is_error and message in answer.text, answer.text
