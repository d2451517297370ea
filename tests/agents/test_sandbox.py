"""The coder's sandbox, run for real: numpy/pandas work; the environment is empty; the directory is fresh and removed;
CPU, memory, wall-time and output limits hold; imports of escape hatches are refused; no network even for code that
gets past the import gate; no files outside its directory; and no run at all where isolation is missing."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agents.sandbox as sandbox
from agents.sandbox import MAX_CODE_CHARS, OUTPUT_BYTES, run_python
from settings import AgentSettings


def on(**limits: Any) -> AgentSettings:
    return AgentSettings(sandbox=True, **limits)


def landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))


def processes_in(directory: str) -> list[int]:
    """Processes whose working directory is `directory` (also once it is deleted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd in (directory, f"{directory} (deleted)") or cwd.startswith(directory + "/"):
                found.append(int(entry.name))
    return found


def wait_until_gone(directory: str, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := processes_in(directory)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def no_process(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Records (and fails) any attempt to start a process."""
    started: list[tuple[Any, ...]] = []

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError("no process may be started")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    return started


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on the parent's 127.0.0.1; non-blocking, so `accept` shows whether anyone connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server


def connect_code(port: int) -> str:
    # Gets past the import gate the way a determined program would: numpy keeps a reference to ctypes. Prints the
    # return code of connect() and errno.
    return f"""
import struct
import numpy as np
ctypes = np._core._internal.ctypes
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(2, 1, 0)
address = struct.pack("=H", 2) + struct.pack("!H", {port}) + bytes([127, 0, 0, 1]) + bytes(8)
print(libc.connect(fd, address, 16), ctypes.get_errno())
"""


def nobody_connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


async def test_refused_when_the_sandbox_is_off(no_process: list[tuple[Any, ...]]) -> None:
    result = await run_python("print('ran')", AgentSettings(sandbox=False))

    assert result.exit_reason == "refused" and not result.ok
    assert "agents.sandbox" in result.stderr and result.stdout == ""
    assert no_process == []


async def test_oversized_or_unserialisable_input_is_refused(no_process: list[tuple[Any, ...]]) -> None:
    too_long = await run_python("#" * (MAX_CODE_CHARS + 1), on())
    assert too_long.exit_reason == "refused" and str(MAX_CODE_CHARS) in too_long.stderr

    bad_data = await run_python("print(DATA)", on(), {"when": object()})
    assert bad_data.exit_reason == "refused" and "JSON" in bad_data.stderr
    assert no_process == []


async def test_numpy_and_pandas_analyse_the_data() -> None:
    data = {"cpu": [0.2, 0.3, 0.25, 0.9, 0.95, 0.3], "pods": ["a", "b", "a", "b", "a", "b"]}
    code = """
import numpy as np
import pandas as pd
df = pd.DataFrame(DATA)
print(round(float(np.percentile(df.cpu, 50)), 3), df.groupby("pods").cpu.max().to_dict())
"""
    result = await run_python(code, on(), data)

    assert result.exit_reason == "ok" and result.ok, result.stderr
    assert result.stdout.strip() == "0.3 {'a': 0.95, 'b': 0.9}"
    assert (await run_python("print(DATA)", on())).stdout == "None\n"


async def test_environment_holds_nothing_of_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDPILOT_LLM__API_KEY", "sk-fake-should-not-leak-0123456789")
    monkeypatch.setenv("KUBECONFIG", "/home/someone/.kube/config")

    result = await run_python("import json, os\nprint(json.dumps(dict(os.environ)))", on())

    assert result.ok, result.stderr
    assert json.loads(result.stdout) == sandbox.CHILD_ENV
    assert "sk-fake" not in result.stdout and "KUBECONFIG" not in result.stdout


async def test_working_directory_is_fresh_and_removed_afterwards() -> None:
    code = """
import os
assert sorted(os.listdir(".")) == ["data.json", "main.py"]
with open("scratch.csv", "w") as f:
    f.write("a,b\\n1,2\\n")
print(os.getcwd())
"""
    first, second = await run_python(code, on()), await run_python(code, on())

    assert first.ok and second.ok, first.stderr + second.stderr
    dirs = [Path(first.stdout.strip()), Path(second.stdout.strip())]
    assert dirs[0] != dirs[1]
    for d in dirs:
        assert d.parent == Path(tempfile.gettempdir()) and d.name.startswith("cloudpilot-sandbox-")
        assert not d.exists()


async def test_an_endless_loop_hits_the_cpu_limit() -> None:
    result = await run_python("while True:\n    pass", on(sandbox_cpu_seconds=1, sandbox_wall_seconds=60))

    assert result.exit_reason == "cpu" and not result.ok
    assert "CPU limit" in result.stderr
    assert result.seconds < 30


async def test_the_cpu_limit_holds_inside_native_code() -> None:
    # sum() over a range never returns to the interpreter, so no Python handler runs: the hard limit kills it.
    code = "print('started', flush=True)\nsum(range(10**14))"
    result = await run_python(code, on(sandbox_cpu_seconds=1, sandbox_wall_seconds=60))

    assert result.exit_reason == "cpu" and result.stdout == "started\n"
    assert "SIGKILL" in result.stderr and "sigprocmask" not in result.stderr
    assert result.seconds < 30


async def test_wall_time_limit_kills_the_whole_process_tree() -> None:
    # The child forks a grandchild that leaves the process group (setsid, through the ctypes escape): only the
    # PID namespace can take it down with the run.
    code = """
import os, time
import numpy as np
libc = np._core._internal.ctypes.CDLL(None)
print(os.getcwd(), flush=True)
if libc.fork() == 0:
    libc.setsid()
time.sleep(100)
"""
    result = await run_python(code, on(sandbox_wall_seconds=3))

    assert result.exit_reason == "timeout" and not result.ok
    assert "wall-time limit of 3s" in result.stderr
    assert result.seconds < 3 + 2.5  # stopped at the limit, not after a grace period
    workdir = result.stdout.strip()
    assert workdir.startswith(tempfile.gettempdir())
    assert wait_until_gone(workdir) == []
    assert not Path(workdir).exists()


@pytest.mark.parametrize(
    "code",
    ["import numpy as np\nx = np.ones(2 * 1024**3 // 8)\nprint(x.sum())", "block = bytearray(2 * 1024**3)"],
    ids=["numpy", "bytearray"],
)
async def test_allocating_2_gb_is_a_memory_error(code: str) -> None:
    result = await run_python(code, on(sandbox_memory_mb=512))

    assert result.exit_reason == "memory" and not result.ok
    assert "MemoryError" in result.stderr and "memory limit of 512 MB" in result.stderr


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import socket", "not allowed"),
        ("import subprocess", "not allowed"),
        ("import ctypes", "not allowed"),
        ("import urllib.request", "not allowed"),
        ("import sys", "not allowed"),
        ("__import__('socket')", "not allowed"),
        ("exec('import socket', {})", "not allowed"),
        ("import numpy as np\nexec('import socket', vars(np))", "not available"),  # past the gate, not the finder
        ("import numpy as np\nexec('import subprocess', vars(np))", "not available"),
        ("import os\nos.system('true')", "has no attribute 'system'"),
        ("import os\nos.fork()", "has no attribute 'fork'"),
    ],
)
async def test_escape_hatches_are_refused(code: str, message: str) -> None:
    result = await run_python(code, on())

    assert result.exit_reason == "error" and not result.ok
    assert message in result.stderr


async def test_no_network_even_past_the_import_gate(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    scope: dict[str, Any] = {}
    exec(connect_code(port), scope)  # the same code in the server's process does connect: it is a real attempt
    assert not nobody_connected(listener)

    result = await run_python(connect_code(port), on())

    assert result.ok, result.stderr
    returned, errno = map(int, result.stdout.split())
    assert returned == -1 and errno != 0
    assert nobody_connected(listener)


async def test_the_network_namespace_alone_stops_the_connection(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without Landlock (whose TCP rules answer EACCES first), the new network namespace is what stops the code:
    # its loopback is down and is not the server's.
    assert "if not _landlock(os.getcwd()):" in sandbox.BOOTSTRAP
    monkeypatch.setattr(sandbox, "BOOTSTRAP", sandbox.BOOTSTRAP.replace("if not _landlock(os.getcwd()):", "if 0:"))

    result = await run_python(connect_code(listener.getsockname()[1]), on())

    assert result.ok, result.stderr
    returned, errno = map(int, result.stdout.split())
    assert returned == -1 and errno in (101, 111)  # ENETUNREACH (loopback down), ECONNREFUSED (nobody there)
    assert nobody_connected(listener)


@pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock: files are not confined here")
async def test_files_outside_its_directory_are_out_of_reach(tmp_path: Path) -> None:
    secret = tmp_path / "kubeconfig"
    secret.write_text("token: abc")
    secret.chmod(0o600)
    assert secret.read_text() == "token: abc"  # readable by the server's user
    code = f"""
for attempt in (lambda: open({str(secret)!r}).read(), lambda: open({str(tmp_path / "new")!r}, "w")):
    try:
        attempt()
        print("allowed")
    except PermissionError:
        print("denied")
"""
    result = await run_python(code, on())

    assert result.ok, result.stderr
    assert result.stdout.split() == ["denied", "denied"]
    assert not (tmp_path / "new").exists()


async def test_output_is_capped() -> None:
    result = await run_python("print('x' * 1_000_000)\nprint('end')", on())

    assert result.ok
    assert result.stdout.startswith("x" * 1000)
    assert len(result.stdout) < OUTPUT_BYTES + 200
    assert "1000005 bytes in all" in result.stdout


async def test_printed_secrets_are_masked() -> None:
    result = await run_python("print('password=hunter2')", on())

    assert result.ok and "hunter2" not in result.stdout and "password=***" in result.stdout


async def test_refused_without_unshare(monkeypatch: pytest.MonkeyPatch, no_process: list[tuple[Any, ...]]) -> None:
    monkeypatch.setattr(sandbox, "UNSHARE", None)

    result = await run_python("print('ran')", on())

    assert result.exit_reason == "refused" and "unshare" in result.stderr
    assert no_process == []


def fake_unshare(tmp_path: Path, body: str) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    script = tmp_path / "unshare"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{body}\n')
    script.chmod(0o755)
    return script, log


async def test_refused_when_the_host_cannot_create_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, log = fake_unshare(tmp_path, 'echo "unshare: unshare failed: Operation not permitted" >&2\nexit 1')
    monkeypatch.setattr(sandbox, "UNSHARE", str(script))

    result = await run_python("print('ran')", on())

    assert result.exit_reason == "refused" and result.stdout == ""
    assert "network namespace" in result.stderr and "Operation not permitted" in result.stderr
    [probe] = log.read_text().splitlines()  # only the isolation check was started, never the code
    assert "print('ran')" not in probe and "BOOTSTRAP" not in probe and "main.py" not in probe


async def test_refused_when_unshare_does_not_isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An `unshare` that runs the command in the server's own namespaces (a broken wrapper, a stub in a container).
    script, log = fake_unshare(tmp_path, 'while [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"')
    monkeypatch.setattr(sandbox, "UNSHARE", str(script))

    result = await run_python("print('ran')", on())

    assert result.exit_reason == "refused" and result.stdout == ""
    assert "shares the server's net and pid namespace" in result.stderr
    assert len(log.read_text().splitlines()) == 1


async def test_a_cancelled_run_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    task = asyncio.ensure_future(run_python("import time\ntime.sleep(100)", on(sandbox_wall_seconds=60)))
    deadline = time.monotonic() + 30
    while not ((dirs := list(base.iterdir())) and processes_in(str(dirs[0]))):
        assert time.monotonic() < deadline and not task.done(), "the run never started"
        await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert wait_until_gone(str(dirs[0])) == []
    assert list(base.iterdir()) == []
