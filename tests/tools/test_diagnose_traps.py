"""Every trap on the real control plane: a healthy namespace full of things that look suspicious gives no
finding above severity info."""

from __future__ import annotations

import pytest

from tests.tools.conftest_istio import kube, mesh  # noqa: F401 - fixtures
from tests.tools.diagnosis_scenarios import Kube
from tests.tools.diagnosis_traps import TRAPS, Trap
from tools.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
async def test_trap_gives_nothing_above_info(trap: Trap, kube: Kube, namespace: str, call) -> None:  # noqa: F811
    trap.build(kube, namespace)
    result = await call(diagnose, namespace=namespace, force_refresh=True)
    loud = [f"{f.severity} {f.code} {f.object.short()}" for f in result.findings if f.severity != "info"]
    assert not loud, f"{loud}\n{result.render()}"
