"""kubeconfig documents: which fields may be used, files inlined for the registry, TLS kept in memory, and why a
file cannot be read (in one line, never its contents).

A kubeconfig can make whoever loads it run a program (`exec`, `auth-provider`), read local files (`tokenFile`,
`client-certificate`, `client-key`, `certificate-authority`) or send its traffic through a proxy (`proxy-url`).
That is the operator's choice for a kubeconfig on the server's own machine; any other kubeconfig text must
pass `inline_only` first, before anything in it is loaded.

The kubernetes client writes `*-data` certificates and keys to temporary files. `load_into` reads them back
into memory and removes the files before it returns, so no key material outlives the load.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.config.config_exception import ConfigException
from urllib3.util.ssl_ import create_urllib3_context

from errors import InvalidInput, NotAllowed, quote

USER_FIELDS = {
    "exec": "runs a program",
    "auth-provider": "runs a credential plugin",
    "tokenFile": "reads a local file",
    "client-certificate": "reads a local file",
    "client-key": "reads a local file",
}
CLUSTER_FIELDS = {"certificate-authority": "reads a local file", "proxy-url": "sends all traffic through a proxy"}
_FILE_TO_DATA = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}
_LOADING = threading.Lock()  # the client's temp-file cache is global: one load (and clean-up) at a time


def selected(doc: Any, context: str | None) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The context the client would use (`context`, else current-context) with every cluster and user entry
    of that name (duplicates included, so that no entry escapes a check)."""
    if not isinstance(doc, dict):
        raise InvalidInput("This is not a kubeconfig: expected a YAML mapping with clusters, users and contexts.")
    name = context or doc.get("current-context")
    if not name:
        raise InvalidInput("The kubeconfig has no current-context; name the context to use.")
    contexts = [c.get("context") for c in _entries(doc, "contexts") if c.get("name") == name]
    if not contexts or not isinstance(contexts[0], dict):
        known = ", ".join(sorted(str(c.get("name")) for c in _entries(doc, "contexts"))) or "none"
        raise InvalidInput(f"Context {quote(name)} is not in the kubeconfig (contexts: {quote(known, 200)}).")
    ctx = contexts[0]
    clusters = [_inner(c, "cluster") for c in _entries(doc, "clusters") if c.get("name") == ctx.get("cluster")]
    users = [_inner(u, "user") for u in _entries(doc, "users") if u.get("name") == ctx.get("user")]
    return str(name), clusters, users


def inline_only(doc: Any, context: str | None, cluster: str = "") -> None:
    """Refuse a kubeconfig whose selected context would run a program, read a local file or use a proxy.

    Called on the parsed document before the client sees it: nothing is executed or read when it refuses.
    """
    name, clusters, users = selected(doc, context)
    found = [(f, why, "user") for u in users for f, why in USER_FIELDS.items() if f in u]
    found += [(f, why, "cluster") for c in clusters for f, why in CLUSTER_FIELDS.items() if f in c]
    if found:
        field, why, where = found[0]
        raise NotAllowed(
            f"The kubeconfig {f'of cluster {quote(cluster)} ' if cluster else ''}sets `{field}` in its {where} "
            f"entry, which {why} on CloudPilot's machine; a kubeconfig that an operator did not add may only "
            "carry inline credentials (token, *-data fields).",
            hint="An operator adds such a cluster on the server's machine: "
            f"cloudpilot clusters add {cluster or 'NAME'} --kubeconfig PATH --context {name}",
        )


def for_registry(doc: Any, context: str | None, base_dir: Path) -> dict[str, Any]:
    """The one context of an operator's kubeconfig, ready to store: certificate and key files inlined as
    *-data fields, and relative paths that must stay paths (tokenFile, an exec command) made absolute."""
    name, clusters, users = selected(doc, context)
    ctx = next(c["context"] for c in _entries(doc, "contexts") if c.get("name") == name)
    cluster, user = dict(clusters[0]) if clusters else {}, dict(users[0]) if users else {}
    if not cluster.get("server"):
        raise InvalidInput(f"Context {quote(name)} names no cluster with a server URL.")
    for entry in (cluster, user):
        for file_key, data_key in _FILE_TO_DATA.items():
            if file_key in entry:
                path = base_dir / os.path.expanduser(str(entry.pop(file_key)))
                if data_key not in entry:
                    entry[data_key] = base64.b64encode(_read(path, file_key)).decode()
    if "tokenFile" in user:
        user["tokenFile"] = str(base_dir / os.path.expanduser(str(user["tokenFile"])))
    command = (user.get("exec") or {}).get("command")
    if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
        user["exec"] = {**user["exec"], "command": str(base_dir / command)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "contexts": [{"name": name, "context": dict(ctx)}],
        "clusters": [{"name": ctx.get("cluster"), "cluster": cluster}],
        "users": [{"name": ctx.get("user"), "user": user}],
    }


def load_into(
    cfg: kclient.Configuration, *, doc: dict[str, Any] | None = None, files: str | None = None, context: str | None
) -> ssl.SSLContext | None:
    """Fill `cfg` from a kubeconfig document or file list (os.pathsep-separated), keeping TLS material in memory.

    Returns an SSL context holding the client certificate when there is one (`install` puts it into a client);
    the CA goes into `cfg.ca_cert_data`. The temporary files the client wrote are gone when this returns.
    """
    with _LOADING:
        scratch = tempfile.mkdtemp(prefix="cloudpilot-kube-")
        try:
            if doc is not None:
                kconfig.load_kube_config_from_dict(
                    doc, context=context, client_configuration=cfg, persist_config=False, temp_file_path=scratch
                )
            else:
                kconfig.load_kube_config(
                    config_file=files,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                    temp_file_path=scratch,
                )
            return _into_memory(cfg, Path(scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def install(api: kclient.ApiClient, tls: ssl.SSLContext | None) -> None:
    """Make `api` connect with `tls` (a client certificate held in memory) instead of certificate files."""
    if tls is None:
        return
    kw = api.rest_client.pool_manager.connection_pool_kw
    for key in ("ca_certs", "ca_cert_data", "cert_file", "key_file"):
        kw.pop(key, None)
    kw["ssl_context"] = tls


def _into_memory(cfg: kclient.Configuration, scratch: Path) -> ssl.SSLContext | None:
    def ours(path: Any) -> bool:
        return bool(path) and Path(path).resolve().parent == scratch.resolve()

    if cfg.ssl_ca_cert and ours(cfg.ssl_ca_cert):
        data = Path(cfg.ssl_ca_cert).read_bytes()
        cfg.ca_cert_data = data.decode() if data.lstrip().startswith(b"-----BEGIN") else data
        cfg.ssl_ca_cert = None
    if not (cfg.cert_file and cfg.key_file and ours(cfg.cert_file) and ours(cfg.key_file)):
        return None
    tls = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if cfg.verify_ssl else ssl.CERT_NONE)
    tls.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.ca_cert_data:
        tls.load_verify_locations(cadata=cfg.ca_cert_data)
    elif cfg.ssl_ca_cert:
        tls.load_verify_locations(cafile=cfg.ssl_ca_cert)
    else:
        tls.load_default_certs()
    cfg.cert_file = cfg.key_file = None
    return tls


def unreadable(files: list[str], error: Exception) -> str:
    """Which kubeconfig file is unusable and why, in one line without its contents."""
    for path in files:
        try:
            yaml.safe_load(Path(path).read_bytes())
        except OSError as e:
            return f"the kubeconfig at {path} cannot be read ({e.strerror or type(e).__name__})."
        except yaml.YAMLError as e:
            return f"the kubeconfig at {path} cannot be read: it is not valid YAML ({yaml_reason(e)})."
    where = " or ".join(files)
    reason = str(error)[:120] if isinstance(error, ConfigException) else type(error).__name__
    return f"the kubeconfig at {where} cannot be used: it is not a valid kubeconfig ({reason})."


def yaml_reason(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        return f"{e.problem or 'syntax error'} at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}"
    return type(e).__name__


def _entries(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise InvalidInput(f"The kubeconfig's `{key}` must be a list of named entries.")
    return value


def _inner(entry: dict[str, Any], key: str) -> dict[str, Any]:
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"The kubeconfig entry {quote(entry.get('name'))} has a `{key}` that is not a mapping.")
    return value


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"The kubeconfig's `{field}` file {path} cannot be read: {e.strerror or e}.") from e
