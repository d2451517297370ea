"""Bounded inputs of the change tools: manifest and patch sizes, YAML alias bombs and deep nesting are refused
with a clear error before anything is built or sent, quoting at most a short prefix of the input."""

from __future__ import annotations

import tracemalloc

import pytest

from errors import InvalidInput
from settings import Settings
from tools.mutations import resource_apply, resource_patch

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def settings(write_settings: Settings) -> Settings:  # writes switched on, small caps
    return write_settings.model_copy(
        update={"limits": write_settings.limits.model_copy(update={"manifest_bytes": 4_000, "patch_bytes": 2_000})}
    )


def billion_laughs() -> str:
    """Nine levels of nine aliases: 9**9 (≈387 million) strings once expanded, in under 400 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


async def test_a_billion_laughs_manifest_is_refused_cheaply(call) -> None:
    bomb = billion_laughs()
    assert len(bomb) <= 400
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="aliases") as caught:
            await call(resource_apply, manifest=bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert "lol" not in str(caught.value)


async def test_many_aliases_and_deep_nesting_are_refused(call) -> None:
    aliases = "x: &x 1\ny: [" + ",".join(["*x"] * 65) + "]\n"
    with pytest.raises(InvalidInput, match="more than 64 YAML aliases"):
        await call(resource_apply, manifest=aliases)
    deep = "a: " + "[" * 80 + "]" * 80 + "\n"
    with pytest.raises(InvalidInput, match="nested deeper than 64 levels"):
        await call(resource_apply, manifest=deep)
    with pytest.raises(InvalidInput, match="alias"):  # an alias inside the node it names
        await call(resource_apply, manifest="a: &a [1, *a]\n")


async def test_sizes_are_bounded(call) -> None:
    big = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {k: '" + "x" * 5_000 + "'}\n"
    with pytest.raises(InvalidInput, match=r"manifest is 5,0\d\d bytes; the limit is 4,000"):
        await call(resource_apply, manifest=big)
    patch = {"data": {"k": "x" * 3_000}}
    with pytest.raises(InvalidInput, match=r"patch is 3,0\d\d bytes; the limit is 2,000"):
        await call(resource_patch, kind="ConfigMap", name="c", namespace="default", patch=patch)
    nested: dict = {}
    inner = nested
    for _ in range(70):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidInput, match="nested deeper than 64"):
        await call(resource_patch, kind="ConfigMap", name="c", namespace="default", patch=nested)


async def test_errors_quote_only_a_short_prefix(call) -> None:
    token = "Q" * 2_000
    bad = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {{k: [{token}}}\n"  # unbalanced
    for manifest in (
        bad,
        f"apiVersion: v1\nkind: {token}\nmetadata: {{name: x}}\n",
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {token.lower()}}}\n",
        f"apiVersion: v1/{token}\nkind: ConfigMap\nmetadata: {{name: x}}\n",
    ):
        with pytest.raises(InvalidInput) as caught:
            await call(resource_apply, manifest=manifest)
        text = str(caught.value)
        assert "Q" * 81 not in text and "q" * 81 not in text, text[:300]
        assert len(text) < 400, text
