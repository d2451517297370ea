"""Masking: what the corpus catches, and how long masking takes per MB of adversarial and realistic input,
side by side with the module it replaced.

    .venv/bin/python -m benchmarks.masking [--runs 3]

Corpus: every entry of `tests/security/mask_corpus.py` through its entry point (`redact` for objects,
`mask_text` for texts); a leak is a secret that survives, an over-mask a readable entry that changes (or a
masked entry that loses the text it must keep). Both must be 0 for the current module.

Timing: best of `--runs` wall-clock runs per input, as ms per MB of input. The previous module (guard/mask.py at
commit BASELINE, loaded from git) backtracks: its time grows with the square of some inputs (a 100 kB hex value
once took 56 s), so it runs on 10 kB and 20 kB cuts of each input only; its ms/MB is scaled from 10 kB (a lower
bound where it grows faster than linearly) and `20k/10k` shows how its time grows when the input doubles (2 is
linear, 4 quadratic).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from guard import mask  # noqa: E402
from tests.security.mask_corpus import MASKED, OBJECT_CONTEXTS, READABLE, Case, env  # noqa: E402

BASELINE = "cb3d4defe044f2ca7acf16f30e07c3b59f7b7eec"  # the last commit with the regex-only module
MB = 1 << 20


def previous_module() -> types.ModuleType | None:
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE}:guard/mask.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("previous_mask")
    exec(compile(source, f"{BASELINE[:8]}:guard/mask.py", "exec"), module.__dict__)  # our own history
    return module


def strings(obj: Any) -> list[str]:
    out, todo = [], [obj]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            todo += [*map(str, node), *node.values()]
        elif isinstance(node, list):
            todo += node
    return out


def corpus(module: Any) -> tuple[int, int]:
    def run(case: Case) -> Any:
        return module.redact(case.subject) if case.context in OBJECT_CONTEXTS else module.mask_text(case.subject)

    def has(needle: str, obj: Any) -> bool:
        return any(needle in s for s in strings(obj))

    leaks = sum(has(c.secret, run(c)) for c in MASKED)
    over = sum(bool(c.keep) and not has(c.keep, run(c)) for c in MASKED)
    over += sum(run(c) != c.subject for c in READABLE)
    return leaks, over


def realistic_log(size: int) -> str:
    """Controller, access and JSON log lines; about 1 in 25 carries a credential, more name settings."""
    rnd = random.Random(7)
    plain = [
        "I0502 10:14:03.123456       1 controller.go:211] Syncing deployment shop/checkout-{n} (generation {n})",
        '10.244.1.{n} - - [02/May/2024:10:14:03 +0000] "GET /api/v1/orders?page={n} HTTP/1.1" 200 {n} "-" "kube-probe"',
        '{{"level":"info","ts":1714644843.{n},"msg":"reconciled","pod":"checkout-7d9f8b6c5d-{n}","duration_ms":{n}}}',
        "2024-05-02T10:14:03Z WARN cache miss for key order:{n} (token_ttl=300 secret_name=db-credentials)",
        'E0502 10:14:03.5 kubelet.go:1{n}] MountVolume.SetUp failed for volume "creds" : secret "db" not found',
        "2024-05-02T10:14:03Z INFO image ghcr.io/acme/checkout@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b{n}",
    ]
    secret = [
        "2024-05-02T10:14:03Z DEBUG connecting to postgres://app:pw{n}@db.shop.svc:5432/shop",
        '{{"level":"debug","msg":"upstream call","headers":{{"Authorization":"Bearer tok{n}abcdef"}}}}',
        "2024-05-02T10:14:03Z DEBUG config loaded password=pw{n} api_key=key{n}",
    ]
    lines, total = [], 0
    while total < size:
        line = rnd.choice(secret if rnd.random() < 0.04 else plain).format(n=rnd.randrange(1, 99999))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def deep_text(size: int) -> str:
    depth = size // 14
    return '{"spec": ' * depth + '"x"' + "}" * depth


def deep_objects(size: int) -> list[Any]:
    """Objects nested 200 deep (the previous module recursed), as many as fill `size` bytes of JSON."""
    one: Any = {"password": "hunter2", "note": "ok"}
    for _ in range(200):
        one = {"spec": one}
    count = max(1, size // len(json.dumps(one)))
    return [one] * count


def pods(size: int) -> dict[str, Any]:
    pod = env("DB_HOST", "db.shop.svc")
    pod["metadata"]["labels"] = {"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8b6c5d"}
    pod["status"] = {"phase": "Running", "podIP": "10.244.1.7", "containerStatuses": [{"name": "app", "ready": True}]}
    return {"kind": "PodList", "items": [pod] * max(1, size // len(json.dumps(pod)))}


TEXTS: dict[str, Callable[[int], str]] = {
    "hex run": lambda n: "deadbeef" * (n // 8),
    "word run": lambda n: "a" * n,
    "credential-noun run": lambda n: "passwordtoken" * (n // 13),
    "a=a=a= run": lambda n: "a=" * (n // 2),
    "k=v pairs": lambda n: "key=value " * (n // 10),
    "secret_name= run": lambda n: "secret_name=" * (n // 12),
    "deep JSON text": deep_text,
    "PEM header, no end": lambda n: ("-----BEGIN PRIVATE KEY-----\n" + "QUJD" * n)[:n],
    "realistic log (1 in 25 lines a secret)": realistic_log,
    "dense: password=x every 11 bytes": lambda n: "password=x " * (n // 11),
    "dense: token_ttl=1 every 12 bytes": lambda n: "token_ttl=1 " * (n // 12),
}
OBJECTS: dict[str, Callable[[int], Any]] = {"deep JSON objects (redact)": deep_objects, "pod list (redact)": pods}


def best(fn: Callable[[Any], Any], data: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    old = previous_module()
    leaks, over = corpus(mask)
    print(f"corpus: {len(MASKED)} values to mask, {len(READABLE)} to leave readable")
    print(f"  current module:  {leaks} leaks, {over} over-masked")
    if old:
        old_leaks, old_over = corpus(old)
        print(f"  previous module: {old_leaks} leaks, {old_over} over-masked")
    print(f"\n{'input':<42} {'ms/MB now':>10} {'ms/MB before (10 kB)':>21} {'20k/10k':>8}")
    cases: list[tuple[str, Callable[[int], Any], bool]] = [(n, f, False) for n, f in TEXTS.items()]
    cases += [(n, f, True) for n, f in OBJECTS.items()]
    for name, make, is_object in cases:
        entry = mask.redact if is_object else mask.mask_text
        data = make(MB)
        size = len(json.dumps(data)) if is_object else len(data.encode())
        now = best(entry, data, runs) * 1000 / (size / MB)
        before, growth = "-", "-"
        if old:
            old_entry = old.redact if is_object else old.mask_text
            small, double = make(10_000), make(20_000)
            sizes = [len(json.dumps(d)) if is_object else len(d) for d in (small, double)]
            t10, t20 = best(old_entry, small, runs), best(old_entry, double, runs)
            before = f"{t10 * 1000 / (sizes[0] / MB):,.0f}"
            growth = f"{t20 / t10 if t10 else 0:.1f}"
        print(f"{name:<42} {now:>10,.1f} {before:>21} {growth:>8}")


if __name__ == "__main__":
    main()
