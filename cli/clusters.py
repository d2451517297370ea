"""`cloudpilot clusters`: the operator decides which clusters CloudPilot can reach.

    cloudpilot clusters add NAME --kubeconfig PATH [--context C]
    cloudpilot clusters add NAME --server URL --token-file F [--ca-file F] [--insecure-skip-tls-verify]
    cloudpilot clusters list
    cloudpilot clusters remove NAME

`add` also takes --description D and --no-verify; every command takes --config FILE.yaml to find the store the
way the server does (store.path). A kubeconfig added here may use exec plugins, tokenFile and certificate files
(this runs on the server's machine, as its operator): certificate files are inlined, other relative paths made
absolute, and only the chosen context is kept. A cluster is saved only once its server has answered like a
Kubernetes API server (unless --no-verify). Credentials are never printed.

Exit codes: 0 done; 1 refused or failed (not a Kubernetes API server, name taken, unknown name); 2 bad usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from cli import Failed, UsageError, run
from connections.kube import IN_CLUSTER, Clusters, verify_kubernetes
from connections.kubeconfig import for_registry
from errors import CloudPilotError, quote
from guard import validate
from settings import Settings
from store import ClusterRecord, Store

_MAX_FILE_BYTES = 1 << 20


def main(argv: list[str]) -> int:
    return run("clusters", _parser(), argv, lambda args, settings, store: args.command(args, settings, store))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudpilot clusters", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, help="YAML settings file (to find the store)")

    add = sub.add_parser("add", parents=[config], help="register a cluster (checks that it answers first)")
    add.add_argument("name", help="a short unique name: a DNS label such as prod-eu")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--kubeconfig", type=Path, help="a kubeconfig file of yours")
    source.add_argument("--server", help="API server URL, e.g. https://10.0.0.1:6443")
    add.add_argument("--context", help="context in --kubeconfig (default: its current context)")
    add.add_argument("--token-file", type=Path, help="file holding the bearer token (with --server)")
    add.add_argument("--ca-file", type=Path, help="PEM CA certificate of the server (with --server)")
    add.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify the server's TLS")
    add.add_argument("--description", default="", help="shown by clusters_list")
    add.add_argument("--no-verify", action="store_true", help="save without checking that the cluster answers")
    add.set_defaults(command=add_cluster)

    listing = sub.add_parser("list", parents=[config], help="registered clusters (never their credentials)")
    listing.set_defaults(command=list_clusters)

    remove = sub.add_parser("remove", parents=[config], help="forget a cluster and its stored credentials")
    remove.add_argument("name")
    remove.set_defaults(command=remove_cluster)
    return parser


# -- commands -----------------------------------------------------------------------------------------
def add_cluster(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    name = cluster_name(args.name)
    clusters = Clusters(settings.k8s, store)
    if name == IN_CLUSTER or store.get_cluster(name) is not None:
        raise Failed(
            f"A cluster named {name!r} is already registered (or reserved). Pick another name, or remove it "
            f"first: cloudpilot clusters remove {name}"
        )
    if any(c.get("name") == name for c in clusters.contexts()[0]):
        raise Failed(f"{name!r} is a context of the kubeconfig in use; a registered cluster would hide it.")
    record = _from_kubeconfig(args, name) if args.kubeconfig else _from_server(args, name)
    if args.no_verify:
        store.add_cluster(record)
        print(f"Registered cluster {name!r} at {record.server} without checking it (--no-verify).")
        return 0
    probe = clusters.connect_record(record)
    try:
        version = verify_kubernetes(probe)
    except CloudPilotError as e:
        raise Failed(f"Cluster {name!r} was not saved: {e}") from None
    finally:
        probe.close()
    store.add_cluster(record)
    print(
        f"Registered cluster {name!r}: {record.server}, Kubernetes {str(version['gitVersion'])[:40]}, "
        f"as {probe.identity}. Running servers can use it from their next call."
    )
    return 0


def list_clusters(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    records = store.list_clusters()
    if not records:
        print(f"No clusters are registered in {store.where}.")
        return 0
    rows = [["NAME", "SERVER", "AUTH", "ADDED BY", "ADDED", "DESCRIPTION"]]
    rows += [
        [r.name, r.server, r.auth, "operator" if r.trusted else "tool call", r.added_at, r.description] for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def remove_cluster(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    if not store.remove_cluster(args.name):
        known = ", ".join(r.name for r in store.list_clusters()) or "none"
        raise Failed(f"No registered cluster named {quote(args.name)}. Registered clusters: {known}.")
    print(
        f"Removed cluster {args.name!r} and its stored credentials; running servers stop using it from their next call."
    )
    return 0


# -- building the record --------------------------------------------------------------------------------
def cluster_name(name: str) -> str:
    """`name` when it is a DNS label (it names the cluster in every tool call), else UsageError."""
    if not validate.is_dns_label(name):
        raise UsageError(
            f"Cluster name {quote(name)} is invalid: use a DNS label (lowercase letters, digits and '-', starting "
            "and ending with a letter or digit, at most 63 characters), e.g. prod-eu."
        )
    return name


def _from_kubeconfig(args: argparse.Namespace, name: str) -> ClusterRecord:
    for flag in ("token_file", "ca_file"):
        if getattr(args, flag):
            raise UsageError(f"--{flag.replace('_', '-')} goes with --server, not --kubeconfig.")
    if args.insecure_skip_tls_verify:
        raise UsageError("--insecure-skip-tls-verify goes with --server; with --kubeconfig, set it in the file.")
    path: Path = args.kubeconfig.expanduser()
    text = _read(path, "kubeconfig").decode("utf-8", "replace")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"The kubeconfig {path} is not valid YAML{where}.") from None
    try:
        stored = for_registry(doc, args.context, path.resolve().parent)
    except CloudPilotError as e:
        raise UsageError(f"The kubeconfig {path} cannot be used: {e}") from None
    server = str(stored["clusters"][0]["cluster"]["server"])
    return ClusterRecord(
        name=name,
        server=server,
        kubeconfig=yaml.safe_dump(stored, sort_keys=False),
        context=stored["current-context"],
        description=args.description,
        trusted=True,
    )


def _from_server(args: argparse.Namespace, name: str) -> ClusterRecord:
    if args.context:
        raise UsageError("--context goes with --kubeconfig, not --server.")
    if not args.token_file:
        raise UsageError("--server needs --token-file (a file holding the bearer token); or use --kubeconfig.")
    server = str(args.server).rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--server {quote(args.server)} must be a URL such as https://10.0.0.1:6443.")
    token = _read(args.token_file.expanduser(), "token").decode("utf-8", "replace").strip()
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"The token file {args.token_file} must hold one bearer token (no spaces or line breaks).")
    ca = None
    if args.ca_file:
        ca = _read(args.ca_file.expanduser(), "CA").decode("ascii", "replace")
        if "-----BEGIN CERTIFICATE-----" not in ca:
            raise UsageError(f"The CA file {args.ca_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----).")
    return ClusterRecord(
        name=name,
        server=server,
        token=token,
        ca_cert=ca,
        insecure_skip_tls_verify=args.insecure_skip_tls_verify,
        description=args.description,
        trusted=True,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"Cannot read the {what} file {path}: {e.strerror or type(e).__name__}.") from None
    if len(data) > _MAX_FILE_BYTES:
        raise UsageError(f"The {what} file {path} is larger than {_MAX_FILE_BYTES >> 20} MiB; is it the right file?")
    return data
