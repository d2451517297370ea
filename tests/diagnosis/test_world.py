"""The healthy baseline yields no finding: every rule's healthy twin starts from it."""

from tests.diagnosis.world import codes, fresh


def test_healthy_world_has_no_findings() -> None:
    assert codes(fresh()) == []


def test_healthy_world_scoped_to_its_namespace_has_no_findings() -> None:
    assert codes(fresh(), scope={"shop"}) == []
