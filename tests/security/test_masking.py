"""The masking module against its corpus: nothing secret survives, nothing plain is masked, masking is stable,
and adversarial inputs finish (a hang fails under the timeout; no timing is asserted here — see
benchmarks/masking.py for figures)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from guard.mask import MASK, MaskingFilter, hidden, mask_text, redact, sensitive_name
from tests.security.mask_corpus import MASKED, OBJECT_CONTEXTS, READABLE, TEXT_CONTEXTS, Case, b64, env


def run(case: Case) -> Any:
    return redact(case.subject) if case.context in OBJECT_CONTEXTS else mask_text(case.subject)


def strings(obj: Any) -> Iterator[str]:
    todo = [obj]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            todo += [*map(str, node), *node.values()]
        elif isinstance(node, list):
            todo += node


def found(needle: str, obj: Any) -> bool:
    return any(needle in s for s in strings(obj))


def leaks() -> list[str]:
    return [f"{c.label()} leaks {c.secret!r}" for c in MASKED if found(c.secret, run(c))]


def over_masks() -> list[str]:
    out = [f"{c.label()} lost {c.keep!r}" for c in MASKED if c.keep and not found(c.keep, run(c))]
    for c in READABLE:
        shown = run(c)
        if shown != c.subject or not found(c.keep, shown):
            out.append(f"{c.label()} became {json.dumps(shown)[:300]}")
    return out


def test_corpus_is_large_and_covers_every_context() -> None:
    assert len(MASKED) >= 150 and len(READABLE) >= 60
    contexts = {c.context for c in MASKED}
    assert contexts == OBJECT_CONTEXTS | TEXT_CONTEXTS, contexts
    assert {c.context for c in READABLE} >= OBJECT_CONTEXTS - {"object"} | TEXT_CONTEXTS - {"command"}
    assert all(c.secret and c.secret not in c.keep for c in MASKED) and all(c.keep is not None for c in READABLE)


def test_no_secret_survives_masking() -> None:
    found_leaks = leaks()
    assert not found_leaks, f"{len(found_leaks)} leaks of {len(MASKED)}:\n" + "\n".join(found_leaks)


def test_nothing_plain_is_masked() -> None:
    found_over = over_masks()
    assert not found_over, f"{len(found_over)} over-masked:\n" + "\n".join(found_over)


def test_masking_is_idempotent() -> None:
    unstable = []
    for case in MASKED + READABLE:
        once = run(case)
        twice = redact(once) if case.context in OBJECT_CONTEXTS else mask_text(once)
        if twice != once:
            unstable.append(f"{case.label()}: {json.dumps(once)[:200]} -> {json.dumps(twice)[:200]}")
    assert not unstable, "\n".join(unstable)


def test_secret_data_keeps_keys_and_sizes_only() -> None:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "annotations": {"owner": "team-a"}},
        "type": "Opaque",
        "data": {"password": b64("hunter2"), "username": b64("app")},
        "stringData": {"token": "abcdef"},
    }
    out = redact(secret)
    assert out["data"] == {"password": "<redacted: 12 chars>", "username": "<redacted: 4 chars>"}
    assert out["stringData"] == {"token": "<redacted: 6 chars>"}
    assert out["type"] == "Opaque" and out["metadata"] == secret["metadata"] and redact(out) == out
    assert secret["data"]["password"] == b64("hunter2")  # a copy: the input is untouched
    listed = redact({"kind": "SecretList", "items": [{k: v for k, v in secret.items() if k != "kind"}]})
    assert listed["items"][0]["data"]["password"] == "<redacted: 12 chars>"


def test_configmap_credential_keys_keep_key_and_size() -> None:
    cm = {"kind": "ConfigMap", "data": {"db-password": "hunter22", "mode": "fast", "app.ini": "token=abc123xyz\nx=1"}}
    assert redact(cm)["data"] == {"db-password": "<redacted: 8 chars>", "mode": "fast", "app.ini": f"token={MASK}\nx=1"}


def test_hidden_tells_which_pointers_redact_masks() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": b64("hunter2")}}
    assert hidden(secret, "/data/password") and hidden(secret, "/data") and hidden(secret, "")
    assert not hidden(secret, "/metadata/name") and not hidden(secret, "/data/missing")
    deploy = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "DB_PASSWORD", "value": "hunter2"},
                                {"name": "DB_URL", "value": "postgres://app:s3cr3t@db/x"},
                                {"name": "a/b~c", "value": "x"},
                            ],
                        }
                    ]
                }
            }
        }
    }
    base = "/spec/template/spec/containers/0/env"
    assert hidden(deploy, f"{base}/1/value") and hidden(deploy, f"{base}/1") and hidden(deploy, f"{base}/2/value")
    assert not hidden(deploy, f"{base}/0/value") and not hidden(deploy, f"{base}/1/name")
    assert not hidden(deploy, f"{base}/9/value") and not hidden(deploy, f"{base}/01/value")
    assert hidden(deploy, f"{base}/1/value/0")  # "under" a masked string is masked too
    annotated = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a/b": "x"}}}
    assert hidden(annotated, "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
    assert not hidden(annotated, "/metadata/annotations/a~1b")
    with pytest.raises(ValueError):
        hidden(secret, "data/password")


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "PGPASSWORD",
        "clientSecret",
        "x-api-key",
        "X-Auth-Token",
        "Authorization",
        "AWS_SECRET_ACCESS_KEY",
        "aws_session_token",
        "SENTRY_DSN",
        "ConnectionStrings__Default",
        "sessionKey",
        "signing-key",
        "Cookie",
        "sig",
        "privateKey",
        "credentials",
        "htpasswd",
        "_authToken",
        "client-key-data",
        "SMTP_PASS",
        "REDIS_AUTH",
    ],
)
def test_credential_names(name: str) -> None:
    assert sensitive_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "SECRET_NAME",
        "secretName",
        "PASSWORD_FILE",
        "TOKEN_TTL_SECONDS",
        "AUTH_ENABLED",
        "secretKeyRef",
        "AWS_ACCESS_KEY_ID",
        "token_count",
        "tokenizer",
        "max_tokens",
        "continue_token",
        "nextPageToken",
        "automountServiceAccountToken_enabled",
        "checksum/secret",
        "existingSecret",
        "API_KEY_HEADER",
        "auth-url",
        "AUTHOR",
        "key",
        "monkey",
        "secrets",
        "OAUTH_PROVIDER",
    ],
)
def test_reference_and_setting_names(name: str) -> None:
    assert not sensitive_name(name)


def test_probe_headers_env_values_and_messages_are_masked_at_any_depth() -> None:
    obj = {
        "results": [
            {
                "pod": {
                    "spec": {
                        "containers": [
                            {
                                "readinessProbe": {
                                    "httpGet": {
                                        "httpHeaders": [{"name": "Authorization", "value": "Bearer abc.def.ghi"}]
                                    }
                                }
                            }
                        ]
                    },
                    "status": {"containerStatuses": [{"state": {"terminated": {"message": "password=p4ss1 failed"}}}]},
                }
            }
        ]
    }
    out = redact(obj)
    pod = out["results"][0]["pod"]
    assert pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["httpHeaders"][0]["value"] == MASK
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == f"password={MASK} failed"
    assert redact(env("MODE", "prod")) == env("MODE", "prod")


ONE_MB = 1 << 20
TOKEN = "ghp_" + "A1b2C3d4E5" * 3
ADVERSARIAL = {
    "hex run": "deadbeef" * (ONE_MB // 8),
    "word run": "a" * ONE_MB,
    "noun run": "passwordtoken" * (ONE_MB // 13),
    "a=a= run": "a=" * (ONE_MB // 2),
    "key=key= run": "secret_name=" * (ONE_MB // 12),
    "dense credentials": "password=x " * (ONE_MB // 11),
    "dense rejected keys": "token_ttl=1 " * (ONE_MB // 12),
    "deep JSON text": '{"password":' * (ONE_MB // 24) + "1" + "}" * (ONE_MB // 24),
    "open quote": 'password="' + "x" * ONE_MB,
    "PEM without end": "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * (ONE_MB // 4),
    "mysql without -p": "mysql " + "-h db " * (ONE_MB // 6),
    "url without @": "https://user:" + "p" * ONE_MB,
    "jwt prefix run": "eyJ" * (ONE_MB // 3),
    "yaml block": "password: |\n" + "  line\n" * (ONE_MB // 7),
    "many lines": "2024-05-02T10:14:03Z INFO GET /api/v1/orders 200 user=bob token=abc123\n" * (ONE_MB // 72),
    # an unfinished match of one shape (no -p after mysql, no @ after x://a:, no dot in eyJ...) with many
    # matches of others after it: a search per match that reads on to the end of the line would be quadratic
    "mysql, then tokens": ("mysql " + TOKEN + " ") * (ONE_MB // 42),
    "redis-cli, then mysql -pX": "redis-cli x mysql -pX " * (ONE_MB // 22),
    "unfinished URL, then tokens": "x://a:" + ("," + TOKEN) * (ONE_MB // 36),
    "unfinished JWT, then tokens": "eyJabcdefgh" + ("-" + TOKEN) * (ONE_MB // 36),
    "unfinished DSN, then tokens": "a:b" + ("," + TOKEN) * (ONE_MB // 36),
    "unclosed tag, then flags": "<password " + "--token x " * (ONE_MB // 10),
    "login in a long line": "login " + "word " * (ONE_MB // 5),
    "random shapes": " ".join(
        random.Random(7).choice(["ghp_", "xoxb-", "sk-", "AKIA", "eyJ", "SG.", "https://", "Bearer ", "mysql -u"])
        + "A1b2C3d4E5f6G7h8"[: random.Random(i).randrange(4, 16)] * 3
        for i in range(ONE_MB // 40)
    ),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_megabyte_finishes(name: str) -> None:
    text = ADVERSARIAL[name]
    out = mask_text(text)
    assert isinstance(out, str) and mask_text(out) == out


@pytest.mark.timeout(20)
def test_deep_and_wide_objects_finish() -> None:
    deep: Any = {"password": "hunter2"}
    for _ in range(100_000):
        deep = {"a": [deep]}
    out = redact(deep)
    for _ in range(100_000):
        out = out["a"][0]
    assert out == {"password": MASK}
    wide = {"items": [env(f"VAR_{i}", f"value-{i}") for i in range(2_000)]}
    assert redact(wide) == wide


def test_masking_filter_masks_rendered_args_and_tracebacks() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(MaskingFilter())
    log = logging.getLogger("tests.masking")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting with %s and %r", "password=hunter2", {"token": "abc123def"})
        try:
            raise RuntimeError("auth failed: api_key=sk-live-0123456789")
        except RuntimeError:
            log.exception("call failed for %s", "user=bob")
    finally:
        log.removeHandler(handler)
    first, second = records
    assert first.args == () and "hunter2" not in first.getMessage() and "abc123def" not in first.getMessage()
    assert "password=***" in first.getMessage() and "user=bob" in second.getMessage()
    assert second.exc_text and "sk-live-0123456789" not in second.exc_text and "RuntimeError" in second.exc_text
    assert "sk-live-0123456789" not in logging.Formatter().format(second)
