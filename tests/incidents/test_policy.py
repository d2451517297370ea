"""The autofix policy, without a cluster: rule matching, risk, preceding changes, maintenance windows, the rate
limit, the circuit breaker, dry run, and strict validation of what an operator writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engines.incidents.policy import ACTIONS, MAX_ENTRIES, MAX_POLICY_BYTES, Autofix, Decision, load_policy
from errors import InvalidInput

POLICY = """
rules:
  - name: roll-back-bad-images
    findings: [POD_IMAGE_NOT_FOUND, POD_IMAGE_PULL]
    actions: [set_template]
    namespaces: ["shop", "team-*"]
    after_change: rollout
    within_minutes: 30
  - name: oom-memory
    findings: [POD_OOM_KILLED]
    actions: [set_resources]
    clusters: ["prod-*"]
    max_risk: low
  - name: anything-in-sandbox
    findings: ["*"]
    actions: [restart, scale]
    namespaces: [sandbox]
    max_risk: high
"""

WINDOWS = """
maintenance:
  - name: saturday-upgrades
    days: [sat]
    start: "02:00"
    end: "04:30"
  - name: nightly
    start: "23:00"
    end: "01:00"
    clusters: ["batch"]
  - name: holidays
    from: 2026-12-24T00:00:00Z
    until: 2026-12-26T00:00:00Z
    namespaces: ["shop"]
"""

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday, noon UTC


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def decide(fix: Autofix, **overrides: Any) -> Decision:
    plan: dict[str, Any] = {
        "cluster": "prod-eu",
        "namespace": "shop",
        "findings": ["POD_IMAGE_NOT_FOUND"],
        "actions": ["set_template"],
        "risk": "medium",
        "changes": [("rollout", 120.0)],
        "at": NOW,
    }
    return fix.decide(**(plan | overrides))


def oom(fix: Autofix, at: float = NOW) -> Decision:
    return decide(fix, findings=["POD_OOM_KILLED"], actions=["set_resources"], risk="low", changes=[], at=at)


def invalid(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        load_policy(text, source="autofix.yaml")
    assert "autofix.yaml" in caught.value.message and caught.value.hint
    return caught.value


# --- rules -------------------------------------------------------------------------------------------------------


def test_a_matching_rule_approves_automatically_and_says_why():
    d = decide(Autofix(load_policy(POLICY)))
    assert d == Decision(
        "auto",
        "roll-back-bad-images",
        "rule roll-back-bad-images allows set_template for POD_IMAGE_NOT_FOUND in shop after a rollout 2 min before",
    )
    # any one of the incident's findings is enough; namespace globs match
    d = decide(Autofix(load_policy(POLICY)), namespace="team-a", findings=["POD_CRASH_LOOP", "POD_IMAGE_PULL"])
    assert d.verdict == "auto" and "POD_IMAGE_PULL in team-a" in d.reason


def test_an_action_outside_the_rule_waits_for_a_person_naming_it():
    d = decide(Autofix(load_policy(POLICY)), actions=["set_template", "restart"])
    assert d.verdict == "ask" and d.rule is None
    assert d.reason == "action restart not allowed by rule roll-back-bad-images"


def test_a_later_rule_allowing_the_actions_wins_when_the_first_does_not():
    fix = Autofix(load_policy(POLICY))
    d = decide(fix, namespace="sandbox", findings=["POD_CRASH_LOOP"], actions=["restart"], changes=[])
    assert (d.verdict, d.rule) == ("auto", "anything-in-sandbox")


def test_an_unknown_finding_waits_for_a_person():
    d = decide(Autofix(load_policy(POLICY)), findings=["NODE_DISK_PRESSURE"])
    assert d.verdict == "ask" and d.reason == "no rule matches finding NODE_DISK_PRESSURE in shop"
    assert decide(Autofix(load_policy(POLICY)), findings=[]).reason.endswith("gave no finding codes")


def test_a_namespace_or_cluster_outside_the_globs_waits_for_a_person():
    fix = Autofix(load_policy(POLICY))
    assert decide(fix, namespace="payments").verdict == "ask"
    assert decide(fix, namespace="teams-a").verdict == "ask"  # "team-*" does not match "teams-a"
    assert decide(fix, namespace=None).verdict == "ask"  # cluster-scoped: only "*" matches
    assert oom(fix).verdict == "auto"
    elsewhere = decide(fix, cluster="staging", findings=["POD_OOM_KILLED"], actions=["set_resources"], risk="low")
    assert elsewhere.verdict == "ask"


def test_a_plan_riskier_than_the_rule_allows_waits_for_a_person():
    fix = Autofix(load_policy(POLICY))
    d = decide(fix, risk="high")
    assert d.verdict == "ask" and d.reason == "risk high is above rule roll-back-bad-images's max medium"
    assert decide(fix, risk="low").verdict == "auto"
    sandbox = {"namespace": "sandbox", "findings": ["X"], "actions": ["restart"]}
    assert decide(fix, risk="high", **sandbox).verdict == "auto"
    assert decide(fix, risk="critical", **sandbox).verdict == "ask"  # critical: always a person
    assert decide(fix, risk="bogus", **sandbox).verdict == "ask"


def test_a_plan_with_no_actions_waits_for_a_person():
    d = decide(Autofix(load_policy(POLICY)), actions=[])
    assert d.verdict == "ask" and "no actions" in d.reason


def test_after_change_needs_a_recent_change_of_that_kind():
    fix = Autofix(load_policy(POLICY))
    assert decide(fix, changes=[("config", 10.0), ("rollout", 1800.0)]).verdict == "auto"  # exactly 30 min
    d = decide(fix, changes=[("config", 10.0)])
    assert d.verdict == "ask" and d.reason == "no rollout in the 30 min before"
    d = decide(fix, changes=[("rollout", 2700.0)])
    assert d.verdict == "ask" and d.reason == "no rollout in the 30 min before (the last was 45 min before)"
    assert decide(fix, changes=[("rollout", -5.0)]).verdict == "ask"  # after the incident: not a cause
    assert decide(fix, changes=[("rollout", 30.0)]).reason.endswith("after a rollout 30 s before")


def test_after_change_any_accepts_every_kind():
    policy = load_policy(
        "rules: [{name: r, findings: ['*'], actions: [restart], after_change: any, within_minutes: 5}]"
    )
    assert decide(Autofix(policy), actions=["restart"], changes=[("secret", 60.0)]).verdict == "auto"
    assert decide(Autofix(policy), actions=["restart"], changes=[("secret", 600.0)]).verdict == "ask"


# --- maintenance -------------------------------------------------------------------------------------------------


def test_a_daily_window_holds_on_its_days_only():
    fix = Autofix(load_policy(POLICY + WINDOWS))
    saturday = ts("2026-03-07T03:00")
    d = decide(fix, at=saturday)
    assert d == Decision("hold", None, "maintenance window saturday-upgrades is open in shop")
    assert decide(fix, at=ts("2026-03-07T04:30")).verdict == "auto"  # the end is exclusive
    assert decide(fix, at=ts("2026-03-07T01:59")).verdict == "auto"
    assert decide(fix, at=ts("2026-03-08T03:00")).verdict == "auto"  # Sunday: not one of its days
    assert fix.policy.maintenance_at("any", None, saturday) == "saturday-upgrades"


def test_a_window_crossing_midnight_covers_both_sides():
    policy = load_policy(WINDOWS)
    for at in ("2026-03-04T23:00", "2026-03-04T23:59", "2026-03-05T00:30"):
        assert policy.maintenance_at("batch", "jobs", ts(at)) == "nightly", at
    for at in ("2026-03-04T22:59", "2026-03-05T01:00", "2026-03-05T12:00"):
        assert policy.maintenance_at("batch", "jobs", ts(at)) is None, at
    assert policy.maintenance_at("prod-eu", "jobs", ts("2026-03-04T23:30")) is None  # another cluster


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    policy = load_policy('maintenance: [{name: fri-night, days: [fri], start: "22:00", end: "02:00"}]')
    assert policy.maintenance_at("c", "ns", ts("2026-03-06T23:00")) == "fri-night"  # Friday
    assert policy.maintenance_at("c", "ns", ts("2026-03-07T01:00")) == "fri-night"  # Saturday, after midnight
    assert policy.maintenance_at("c", "ns", ts("2026-03-07T23:00")) is None  # Saturday night
    assert policy.maintenance_at("c", "ns", ts("2026-03-06T01:00")) is None  # Friday, before it starts


def test_an_absolute_window_holds_between_from_and_until():
    fix = Autofix(load_policy(POLICY + WINDOWS))
    d = decide(fix, at=ts("2026-12-25T12:00"))
    assert (d.verdict, d.reason) == ("hold", "maintenance window holidays is open in shop")
    assert decide(fix, at=ts("2026-12-26T00:00")).verdict == "auto"
    assert decide(fix, at=ts("2026-12-23T23:59")).verdict == "auto"
    assert decide(fix, namespace="team-a", at=ts("2026-12-25T12:00")).verdict == "auto"  # not its namespace


def test_hold_comes_before_everything_else():
    fix = Autofix(load_policy(POLICY + WINDOWS))
    assert decide(fix, findings=["UNKNOWN"], at=ts("2026-03-07T03:00")).verdict == "hold"


# --- rate limit, circuit breaker, dry run ------------------------------------------------------------------------


def test_the_rate_limit_stops_automatic_fixes_and_frees_after_an_hour():
    fix = Autofix(load_policy(POLICY + "limits: {per_hour: 2}"))
    for i in range(2):
        assert oom(fix, at=NOW + i).verdict == "auto"
        fix.started(NOW + i)
    d = oom(fix, at=NOW + 60)
    assert d.verdict == "ask" and d.reason == "rate limit 2/h reached"
    assert oom(fix, at=NOW + 3599).verdict == "ask"
    assert oom(fix, at=NOW + 3600).verdict == "auto"  # the first start is an hour old
    for i in range(100):
        fix.started(NOW + i)
    assert len(fix.limit.starts) == 2  # bounded memory


def test_a_zero_rate_limit_never_acts():
    fix = Autofix(load_policy(POLICY + "limits: {per_hour: 0}"))
    assert oom(fix).reason == "rate limit 0/h reached"


def test_decide_has_no_side_effects():
    fix = Autofix(load_policy(POLICY + "limits: {per_hour: 1}"))
    assert [oom(fix).verdict for _ in range(3)] == ["auto"] * 3


def test_the_circuit_breaker_opens_after_failures_in_a_row():
    fix = Autofix(load_policy(POLICY + "limits: {failures_before_stop: 2}"))
    fix.finished(False)
    fix.finished(True)  # a success ends the streak
    fix.finished(False)
    assert not fix.breaker_open and oom(fix).verdict == "auto"
    fix.finished(False)
    assert fix.breaker_open
    d = oom(fix)
    assert d.verdict == "ask" and d.reason.startswith("circuit breaker open after 2 failed automatic fixes")
    fix.finished(True)  # a late success does not close it: an operator does
    assert fix.breaker_open and oom(fix).reason == d.reason
    fix.reset()
    assert not fix.breaker_open and oom(fix).verdict == "auto"
    fix.finished(False)
    assert not fix.breaker_open  # reset also cleared the streak


def test_dry_run_reports_without_consuming_the_rate_limit():
    fix = Autofix(load_policy("dry_run: true\n" + POLICY + "limits: {per_hour: 1}"))
    d = decide(fix)
    assert d.verdict == "dry_run" and d.rule == "roll-back-bad-images"
    assert d.reason.startswith("dry run, a person decides: rule roll-back-bad-images allows set_template")
    assert decide(fix).verdict == "dry_run"  # still: the caller does not call started for a dry run
    assert decide(fix, actions=["restart"]).verdict == "ask"  # what no rule allows is still just "ask"


def test_an_empty_policy_allows_nothing():
    assert decide(Autofix(load_policy(""))).verdict == "ask"
    assert decide(Autofix(load_policy("rules: []"))).reason.startswith("no rule matches")


# --- validation --------------------------------------------------------------------------------------------------


def test_an_unknown_field_names_its_path_and_the_allowed_fields():
    e = invalid("rules:\n  - name: r\n    findings: [X]\n    actoins: [restart]\n")
    assert "rules.0.actoins: Extra inputs are not permitted" in e.message
    assert "name, findings, actions" in e.hint and "did you mean actions?" in e.hint
    e = invalid("limits: {per_hours: 3}")
    assert "limits.per_hours" in e.message and "per_hour, failures_before_stop" in e.hint
    e = invalid("dryrun: true")
    assert "dryrun: Extra inputs" in e.message and "dry_run, rules, maintenance, limits" in e.hint


def test_an_unknown_action_lists_the_allowed_ones():
    e = invalid("rules: [{name: r, findings: [X], actions: [delete_everything]}]")
    assert "rules.0.actions.0" in e.message
    assert all(a in e.hint for a in ACTIONS) and "set_target_port" in e.message


def test_max_risk_critical_is_refused():
    e = invalid("rules: [{name: r, findings: [X], actions: [restart], max_risk: critical}]")
    assert "rules.0.max_risk" in e.message and "critical plans always wait for a person" in e.hint


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ('start: "25:00", end: "04:00"', "maintenance.0.start: Value error, '25:00' is not a time of day"),
        ('start: "02:00", end: "4pm"', "maintenance.0.end: Value error, '4pm' is not a time of day"),
        ('start: "02:00", end: 12:30', "maintenance.0.end: Value error, YAML read this time as a number"),
        ('start: "02:00"', "a window needs start and end"),
        ('start: "02:00", end: "03:00", from: 2026-01-01', "either start/end (daily) or from/until"),
        ("from: 2026-01-02, until: 2026-01-01", "until must be after from"),
        ('days: [someday], start: "02:00", end: "03:00"', "maintenance.0.days.0"),
    ],
)
def test_bad_windows_are_refused_naming_the_field(window, expected):
    e = invalid(f"maintenance: [{{name: w, {window}}}]")
    assert expected in e.message and ("HH:MM" in e.hint or "from/until" in e.hint or "sun" in e.hint)


def test_bad_rules_are_refused_clearly():
    assert "is not a finding code" in invalid("rules: [{name: r, findings: [pod_oom], actions: [restart]}]").message
    assert "is not a valid name" in invalid("rules: [{name: Roll Back, findings: [X], actions: [restart]}]").message
    assert "rules.0.findings" in invalid("rules: [{name: r, findings: [], actions: [restart]}]").message
    assert (
        "within_minutes only applies with after_change"
        in invalid("rules: [{name: r, findings: [X], actions: [restart], within_minutes: 5}]").message
    )
    assert (
        "within_minutes"
        in invalid(
            "rules: [{name: r, findings: [X], actions: [restart], after_change: rollout, within_minutes: 0}]"
        ).message
    )
    twice = "rules: [{name: r, findings: [X], actions: [restart]}, {name: r, findings: [Y], actions: [scale]}]"
    assert "repeated: r" in invalid(twice).message


def test_bad_yaml_is_refused_with_its_line():
    e = invalid("rules:\n  - name: r\n   findings: [X\n")
    assert "not valid YAML" in e.message and "line" in e.message


@pytest.mark.parametrize("text", ["- name: r", "just text", "42"])
def test_the_top_level_must_be_a_mapping(text):
    e = invalid(text)
    assert "must be a mapping at the top level" in e.message and "dry_run, rules" in e.hint


def test_huge_text_is_refused_before_parsing():
    e = invalid("#" * (MAX_POLICY_BYTES + 1))
    assert "more than 256 KB" in e.message


def test_too_many_rules_are_refused():
    rules = "".join(f"  - {{name: r{i}, findings: [X], actions: [restart]}}\n" for i in range(MAX_ENTRIES + 1))
    e = invalid("rules:\n" + rules)
    assert "rules: List should have at most 200 items" in e.message and "at most 200 rules" in e.hint
    assert len(load_policy("rules:\n" + rules.rsplit("  - ", 1)[0]).rules) == MAX_ENTRIES


def test_a_yaml_alias_bomb_is_refused_before_it_expands():
    levels = ["a: &a [1, 2]"] + [
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)
    ]
    with pytest.raises(InvalidInput) as caught:
        load_policy("\n".join(levels), source="bomb.yaml")
    assert "aliases expand" in caught.value.message and "bomb.yaml" in caught.value.message
