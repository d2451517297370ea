"""`cloudpilot tokens`: bearer tokens for the streamable HTTP transport.

    cloudpilot tokens create NAME --scope read|write|destructive [--expires 30d]
    cloudpilot tokens list
    cloudpilot tokens revoke NAME

Scopes are cumulative: write includes read, destructive includes write and read (the server's own safety
settings still apply on top). `create` prints the token once, on stdout; only its SHA-256 hash is stored.
Once the store holds an unrevoked token, every HTTP request needs one, loopback included; a running server picks
that up when restarted, while revocation takes effect on the next request. Every command takes --config
FILE.yaml to find the store the way the server does (store.path).

Exit codes: 0 done; 1 refused (name taken, unknown name, already revoked); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import error, run
from guard.auth import Tokens, parse_duration
from runtime import SCOPES


def main(argv: list[str]) -> int:
    return run("tokens", _parser(), argv, lambda args, settings, store: args.command(args, Tokens(store)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudpilot tokens", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, help="YAML settings file (to find the store)")

    create = sub.add_parser("create", parents=[config], help="make a token and print it once")
    create.add_argument("name", help="who or what the token is for (1-63 letters, digits, . _ -)")
    create.add_argument("--scope", required=True, choices=SCOPES, help="read, write (+read) or destructive (+both)")
    create.add_argument("--expires", help="lifetime such as 30d, 12h, 2w (default: until revoked)")
    create.set_defaults(command=_create)

    listing = sub.add_parser("list", parents=[config], help="tokens with scope, dates and state (never the token)")
    listing.set_defaults(command=_list)

    revoke = sub.add_parser("revoke", parents=[config], help="stop a token from working, at once")
    revoke.add_argument("name")
    revoke.set_defaults(command=_revoke)
    return parser


def _create(args: argparse.Namespace, tokens: Tokens) -> int:
    try:
        lifetime = parse_duration(args.expires) if args.expires else None
        secret, info = tokens.create(args.name, args.scope, lifetime)
    except ValueError as e:
        return _error(str(e), 2)
    except KeyError:
        return _error(f"a token named {args.name!r} exists (revoked names stay taken, for the audit log)", 1)
    print(secret)
    sys.stdout.flush()
    until = f"until {info.expires_at}" if info.expires_at else "until revoked"
    print(
        f"token {info.name!r} ({', '.join(sorted(info.scopes, key=SCOPES.index))}) valid {until}. "
        "It is shown only now: send it as 'Authorization: Bearer <token>'.",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace, tokens: Tokens) -> int:
    rows = [
        (t.name, t.scope, t.created_at, t.expires_at or "never", t.revoked_at or "-", t.state) for t in tokens.list()
    ]
    if not rows:
        print("no tokens: HTTP on loopback is open, other addresses are refused", file=sys.stderr)
        return 0
    header = ("NAME", "SCOPE", "CREATED", "EXPIRES", "REVOKED", "STATE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace, tokens: Tokens) -> int:
    try:
        done = tokens.revoke(args.name)
    except KeyError:
        return _error(f"no token named {args.name!r}", 1)
    if not done:
        return _error(f"token {args.name!r} was already revoked", 1)
    print(f"revoked {args.name!r}: requests carrying it are refused from now on", file=sys.stderr)
    return 0


def _error(message: str, code: int) -> int:
    return error("tokens", message, code)
