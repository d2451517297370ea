"""What masking must hide and what it must leave readable, each in the context it reaches the server in.

Every entry is data: its context, the object or text as the server would read it, and either the secret
substring that must vanish (`MASKED`) or the text that must survive (`READABLE`; the whole object or text must
come out unchanged). Values are realistic in shape but fake (EXAMPLE, FAKE, 0000 markers).

Contexts and their entry point: objects go through `redact` (env, args, annotation, configmap, probe,
termination, event, object); texts through `mask_text` (log, json, yaml, url, command).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

OBJECT_CONTEXTS = {"env", "args", "annotation", "configmap", "probe", "termination", "event", "object"}
TEXT_CONTEXTS = {"log", "json", "yaml", "url", "command"}


@dataclass(frozen=True)
class Case:
    context: str
    subject: Any
    secret: str = ""  # must not appear anywhere in the masked output
    keep: str = ""  # must still appear (for READABLE: the output must equal the input)

    def label(self) -> str:
        shown = self.subject if isinstance(self.subject, str) else json.dumps(self.subject)[:160]
        return f"[{self.context}] {shown[:160]!r}"


# ---- objects as the API server returns them
def pod(container: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "checkout-7d9f8b6c5d-x2k9p", "namespace": "shop", "resourceVersion": "482913"},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/checkout:1.14.2", **container}]},
        **({"status": status} if status else {}),
    }


def env(name: str, value: str) -> dict[str, Any]:
    return pod({"env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": name, "value": value}]})


def args(*items: str, command: list[str] | None = None) -> dict[str, Any]:
    return pod({"command": command or ["/bin/app"], "args": list(items)})


def annotation(key: str, value: str) -> dict[str, Any]:
    meta = {
        "name": "checkout",
        "namespace": "shop",
        "annotations": {"deployment.kubernetes.io/revision": "7", key: value},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"replicas": 3}}


def configmap(key: str, value: str) -> dict[str, Any]:
    meta = {"name": "checkout-config", "namespace": "shop"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"LOG_FORMAT": "json", key: value}}


def probe(header: str, value: str) -> dict[str, Any]:
    get = {"path": "/healthz", "port": 8080, "httpHeaders": [{"name": header, "value": value}]}
    return pod({"livenessProbe": {"httpGet": get, "periodSeconds": 10}})


def termination(message: str, waiting: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}} if waiting else {}
    last = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
    status = {
        "phase": "Running",
        "containerStatuses": [{"name": "app", "restartCount": 4, "state": state, "lastState": last}],
    }
    return pod({}, status)


def event(message: str, new_api: bool = False) -> dict[str, Any]:
    obj = {"kind": "Pod", "name": "checkout-7d9f8b6c5d-x2k9p", "namespace": "shop"}
    if new_api:
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "reason": "Failed",
            "note": message,
            "regarding": obj,
        }
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "reason": "BackOff",
        "type": "Warning",
        "message": message,
        "involvedObject": obj,
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- fake credentials in realistic shapes
JWT = (
    ".".join(
        b64(p).rstrip("=").replace("+", "-").replace("/", "_")
        for p in ('{"alg":"RS256","kid":"fake-key-1"}', '{"sub":"system:serviceaccount:shop:checkout","iss":"EXAMPLE"}')
    )
    + ".ZmFrZS1zaWduYXR1cmUtRVhBTVBMRQ"
)
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDFAKEFAKEFAKE0000"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\nZmFrZWtleWJvZHlFWEFNUExF\n-----END PRIVATE KEY-----\n"
RSA_PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}RSA\n-----END RSA PRIVATE KEY-----"
GCP_SA = json.dumps(
    {
        "type": "service_account",
        "project_id": "acme-prod",
        "private_key_id": "0123456789abcdef",
        "private_key": PEM,
        "client_email": "ci@acme-prod.iam.gserviceaccount.com",
    }
)
DOCKER_AUTH = b64("robot$ci:FAKEdockerPW0000")
DOCKER_CONFIG = json.dumps(
    {"auths": {"registry.acme.example": {"username": "robot$ci", "password": "FAKEdockerPW0000", "auth": DOCKER_AUTH}}}
)
AWS_ID, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GHP = "ghp_FAKE0123456789abcdefghijklmnopqrstuv"
TOKENS = {  # well-known token shapes, masked under any name and in any text
    "aws session id": "ASIAY34FZKBOKEXAMPLE",
    "github oauth": "gho_FAKE0123456789abcdefghijklmnopqrstuv",
    "github user": "ghu_FAKE0123456789abcdefghijklmnopqrstuv",
    "github app": "ghs_FAKE0123456789abcdefghijklmnopqrstuv",
    "github refresh": "ghr_FAKE0123456789abcdefghijklmnopqrstuv",
    "github fine-grained": "github_pat_11FAKE000_0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
    "gitlab": "glpat-FAKE0123456789abcdEF",
    "openai project": "sk-proj-FAKE0123456789abcdefghijklmnopqrstuvwxyzABCD",
    "openai": "sk-FAKEa1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuV",
    "anthropic": "sk-ant-api03-FAKE0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG",
    "stripe live": "sk_live_FAKE0123456789abcdefghij",
    "stripe restricted": "rk_live_FAKE0123456789abcdefghij",
    "stripe test": "sk_test_FAKE0123456789abcdefghij",
    "stripe webhook": "whsec_FAKE0123456789abcdefghijklmnop",
    "twilio api key": "SK0123456789abcdef0123456789abcdef",
    "sendgrid": "SG.FAKE0123456789abcdef.FAKE0123456789abcdefghijklmnopqrstuvwxyzABCD",
    "npm": "npm_FAKE0123456789abcdefghijklmnopqrstuv",
    "slack bot": "xoxb-000000000000-000000000000-FAKEfakeFAKEfake",
    "slack user": "xoxp-000000000000-000000000000-FAKEfakeFAKE",
    "slack app": "xapp-1-A0000000000-0000000000000-FAKEfake0123",
    "google api": "AIzaSyFAKE0123456789abcdefghijklmnopq",
    "huggingface": "hf_FAKE0123456789abcdefghijklmnopqrst",
    "vault": "hvs.FAKE0123456789abcdefghijklmn",
    "jwt": JWT,
}

MASKED: list[Case] = []
READABLE: list[Case] = []


def masked(context: str, subject: Any, secret: str, keep: str = "") -> None:
    MASKED.append(Case(context, subject, secret=secret, keep=keep))


def readable(context: str, subject: Any, keep: str = "") -> None:
    READABLE.append(Case(context, subject, keep=keep))


# ---- token shapes, each in four contexts under names that say nothing
for kind, token in TOKENS.items():
    masked("log", f"2024-05-02T10:14:03Z INFO sync: using credential {token} for upstream ({kind})", token, "INFO sync")
    masked("env", env("UPSTREAM_VALUE", token), token, "UPSTREAM_VALUE")
    masked("json", json.dumps({"upstream": "billing", "settings": {"value": token}}), token, "billing")
    masked("termination", termination(f"fatal: upstream rejected {token}: 401"), token, "upstream rejected")
masked("log", f"aws: using access key {AWS_ID} in eu-west-1", AWS_ID, "eu-west-1")
masked("env", env("AWS_ACCESS_KEY_ID", AWS_ID), AWS_ID, "AWS_ACCESS_KEY_ID")
masked("yaml", f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET)
masked("log", f"exporting AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET)
masked("env", env("AWS_SECRET_ACCESS_KEY", AWS_SECRET), AWS_SECRET)
masked("args", args("--aws-secret-access-key", AWS_SECRET), AWS_SECRET)
masked("event", event(f"Failed to pull image: auth with token {GHP} rejected"), GHP, "rejected")
masked("url", f"https://{GHP}@github.com/acme/deploy.git", GHP, "github.com/acme/deploy.git")
masked("args", args("clone", f"https://x-access-token:{GHP}@github.com/acme/app.git"), GHP, "github.com/acme/app.git")

# ---- private keys and service accounts
masked("json", GCP_SA, PEM_BODY, "client_email")
masked(
    "yaml",
    f"tls.key: |\n  {RSA_PEM.replace(chr(10), chr(10) + '  ')}\ntls.crt: LS0tLS1CRUdJTiBDRVJU\n",
    PEM_BODY,
    "tls.crt",
)
masked("log", f"loaded key {RSA_PEM[:90]}", PEM_BODY[:40])  # cut off before its END line
masked("configmap", configmap("signing.pem", PEM), PEM_BODY)
masked("configmap", configmap("service-account.json", GCP_SA), PEM_BODY, "client_email")
masked("env", env("GOOGLE_CREDENTIALS_JSON", GCP_SA), PEM_BODY)
masked("termination", termination(f"cannot parse key: {PEM[:70]}"), PEM_BODY[:20])
masked("json", json.dumps({"data": {"tls.key": b64(RSA_PEM)}}), b64(RSA_PEM)[:40])
masked(
    "log",
    f"ssh key: {b64('-----BEGIN OPENSSH PRIVATE KEY-----' + chr(10) + 'b3BlbnNzaC1rZXktdjEAFAKE')}",
    b64("-----BEGIN OPENSSH PRIVATE KEY-----"),
)

# ---- docker and registry credentials
masked("json", DOCKER_CONFIG, "FAKEdockerPW0000", "registry.acme.example")
masked("json", DOCKER_CONFIG, DOCKER_AUTH, "username")
masked("log", f"writing .dockerconfigjson {b64(DOCKER_CONFIG)}", b64(DOCKER_CONFIG)[:30])
masked(
    "object", {"auths": {"registry.acme.example": {"auth": DOCKER_AUTH, "password": "FAKEdockerPW0000"}}}, DOCKER_AUTH
)
masked(
    "args", args("login", "registry.acme.example", "-u", "robot", "--password", "FAKEdockerPW0001"), "FAKEdockerPW0001"
)

# ---- credential-named settings in env vars
for name, value in [
    ("DB_PASSWORD", "hunter2-FAKE"),
    ("POSTGRES_PASSWORD", "Pg-FAKE-pass-9931"),
    ("PGPASSWORD", "pgFAKE77"),
    ("MYSQL_ROOT_PASSWORD", "root-FAKE-4411"),
    ("REDIS_AUTH", "redisFAKE0099"),
    ("RABBITMQ_DEFAULT_PASS", "rabbitFAKE12"),
    ("SMTP_PASS", "smtpFAKE334"),
    ("LDAP_BIND_PW", "ldapFAKE556"),
    ("KEY_PASSPHRASE", "correct horse FAKE staple"),
    ("JWT_SECRET", "jwt-FAKE-0d9c8b7a"),
    ("SECRET_KEY_BASE", "f4k3f4k3f4k3deadbeef0000"),
    ("DJANGO_SECRET_KEY", "django-insecure-FAKE-9x8y7z"),
    ("NEXTAUTH_SECRET", "nextauthFAKE000"),
    ("OAUTH2_PROXY_COOKIE_SECRET", "cookieFAKE0123456789abcdef"),
    ("AZURE_CLIENT_SECRET", "azFAKE~0123456789abc"),
    ("GITHUB_TOKEN", "plainFAKEgithubtoken01"),
    ("NPM_TOKEN", "npmFAKEtokenvalue001"),
    ("VAULT_TOKEN", "vaultFAKE0001"),
    ("SLACK_BOT_TOKEN", "slackFAKEtoken0001"),
    ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
    ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjFAKE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ"),
    ("DD_API_KEY", "0000fake0000fake0000fake0000fake"),
    ("DD_APP_KEY", "1111fake1111fake1111fake1111fake1111fake"),
    ("SENDGRID_API_KEY", "sendgridFAKEvalue"),
    ("OPENAI_API_KEY", "openaiFAKEvalue"),
    ("STRIPE_SECRET_KEY", "stripeFAKE"),
    ("NEW_RELIC_LICENSE_KEY", "nrFAKElicense0000"),
    ("ENCRYPTION_KEY", "encFAKEkey00000000"),
    ("APP_KEY", "base64:FAKEappkey="),
    ("SENTRY_DSN", "https://fakepublickey@o0.ingest.sentry.io/0"),
    ("MINIO_SECRET_KEY", "minioFAKEsecret"),
    ("MINIO_ROOT_PASSWORD", "minioFAKEroot"),
    ("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=acme"),
    ("ConnectionStrings__Default", "Server=db;Database=shop;User Id=sa;FAKEpw=1"),
    ("CLIENT_SECRET", "clientFAKEsecret"),
    ("HTPASSWD", "admin:$apr1$FAKE$0123456789abcdef"),
    ("CREDENTIALS", "user:FAKEcredential"),
    ("API_TOKEN", "12345678"),
    ("SESSION_KEY", "sessFAKEkey"),
    ("SIGNING_KEY", "signFAKEkey"),
    ("PRIVATE_KEY", "privFAKEkey"),
    ("SSH_PRIVATE_KEY", "sshFAKEprivatekey"),
    ("HMAC_KEY", "hmacFAKE"),
    ("WEBHOOK_SECRET", "whFAKEsecret"),
    ("REFRESH_TOKEN", "refreshFAKE0001"),
    ("ID_TOKEN", "idtokFAKE0001"),
    ("BEARER_TOKEN", "bearerFAKE0001"),
    ("DATABASE_DSN", "app:dsnFAKEpw@tcp(db:3306)/shop"),
    ("accessToken", "camelFAKEtoken"),
    ("apiKey", "camelFAKEapikey"),
    ("clientSecret", "camelFAKEclientsecret"),
    ("x-api-key", "kebabFAKEapikey"),
]:
    masked("env", env(name, value), value, name)

# ---- credential-named settings in text: logs, env dumps, JSON, YAML, properties, headers
for context, text, secret in [
    ("log", 'level=info msg="connecting" db_password=hunter2-FAKE user=app', "hunter2-FAKE"),
    ("log", "DEBUG config loaded: {'password': 'py-FAKE-repr', 'user': 'app'}", "py-FAKE-repr"),
    ("log", "starting with PASSWORD='quoted FAKE pass' and MODE=fast", "quoted FAKE pass"),
    ("log", 'settings password="dq-FAKE-pass" retries=3', "dq-FAKE-pass"),
    ("log", "conn opts map[password:gomap-FAKE user:app]", "gomap-FAKE"),
    ("log", "cfg: {Host:db Password:gostruct-FAKE Port:5432}", "gostruct-FAKE"),
    ("log", "token=abcFAKE123def expires_in=3600", "abcFAKE123def"),
    ("log", "POST /oauth/token client_id=web&client_secret=csFAKE0001&grant_type=client_credentials", "csFAKE0001"),
    ("log", "GET /callback?code=ok&access_token=atFAKE0001&state=xyz HTTP/1.1 200", "atFAKE0001"),
    ("log", "> Authorization: Bearer opaqueFAKEtoken0001", "opaqueFAKEtoken0001"),
    ("log", "request headers: Authorization: Basic YWRtaW46RkFLRXBhc3M=", "YWRtaW46RkFLRXBhc3M="),
    ("log", "proxy: Proxy-Authorization: Basic cHJveHk6RkFLRQ== sent", "cHJveHk6RkFLRQ=="),
    ("log", "upstream call with bearer FAKEtok3n.abc_def-ghi", "FAKEtok3n.abc_def-ghi"),
    ("log", "X-Api-Key: apikeyFAKE0001 accepted", "apikeyFAKE0001"),
    ("log", "Set-Cookie: sid=cookieFAKE0001; Path=/; HttpOnly", "cookieFAKE0001"),
    ("log", "Cookie: session=sessFAKE0001; theme=dark", "sessFAKE0001"),
    ("log", "login attempt user=bob password: letmeinFAKE1", "letmeinFAKE1"),
    ("log", "PGPASSWORD=pgFAKE0002 psql -h db -U app shop", "pgFAKE0002"),
    ("log", "aws sts: X-Amz-Security-Token=stsFAKE0001&X-Amz-Signature=sigFAKE0001", "stsFAKE0001"),
    ("log", "aws sts: X-Amz-Security-Token=stsFAKE0001&X-Amz-Signature=sigFAKE0001", "sigFAKE0001"),
    ("log", "npm config: //registry.npmjs.org/:_authToken=npmrcFAKE0001", "npmrcFAKE0001"),
    ("log", "spring.datasource.password=springFAKE01 spring.datasource.url=jdbc:postgresql://db/shop", "springFAKE01"),
    ("log", "java -Djavax.net.ssl.keyStorePassword=ksFAKE0001 -jar app.jar", "ksFAKE0001"),
    ("log", 'error validating field spec.password: Invalid value: "echoFAKE0001": too short', "echoFAKE0001"),
    ("log", "passwd=pwdFAKE0001 pwd_hint=none", "pwdFAKE0001"),
    ("log", "vault login -method=token token=s.FAKEvaulttoken0001", "s.FAKEvaulttoken0001"),
    ("log", "api_key: 'sq-FAKE-apikey-0001'", "sq-FAKE-apikey-0001"),
    ("log", 'secret := "go-FAKE-secret"', "go-FAKE-secret"),
    ("log", "[auth] authorization=Bearer%20urlencFAKE0001 path=/v1", "urlencFAKE0001"),
    ("json", '{"username":"app","password":"compactFAKE01"}', "compactFAKE01"),
    ("json", '{\n  "client_id": "web",\n  "client_secret": "prettyFAKE01"\n}', "prettyFAKE01"),
    ("json", '{"access_token": "oauthFAKE01", "token_type": "Bearer", "expires_in": 3599}', "oauthFAKE01"),
    ("json", '{"refresh_token":"rtFAKE01","id_token":"itFAKE01"}', "rtFAKE01"),
    ("json", '{"db": {"Password" : "spacedFAKE01"}}', "spacedFAKE01"),
    ("json", '{"pin_code": 1, "password": 98765432}', "98765432"),
    ("json", '{"msg": "{\\"apiKey\\": \\"nestedFAKE01\\"}"}', "nestedFAKE01"),
    ("json", '{"headers": {"Authorization": "Basic Ym9iOkZBS0U="}}', "Ym9iOkZBS0U="),
    ("json", '[{"name": "DB_PASSWORD", "value": "jsonenvFAKE01"}]', "jsonenvFAKE01"),
    ("json", '{"httpHeaders":[{"name":"X-Auth-Token","value":"hdrFAKE01"}]}', "hdrFAKE01"),
    ("json", '{"connectionString": "Server=tcp:acme.database.windows.net;Password=csFAKE02;"}', "csFAKE02"),
    ("yaml", "database:\n  host: db.shop.svc\n  password: yamlFAKE01\n", "yamlFAKE01"),
    ("yaml", 'redis:\n  password: "quotedyamlFAKE"\n', "quotedyamlFAKE"),
    ("yaml", "smtp:\n  password: two words FAKE # rotated monthly\n", "two words FAKE"),
    ("yaml", "env:\n- name: API_TOKEN\n  value: yamlenvFAKE01\n- name: MODE\n  value: prod\n", "yamlenvFAKE01"),
    ("yaml", "httpHeaders:\n  - name: Authorization\n    value: Bearer yamlhdrFAKE01\n", "yamlhdrFAKE01"),
    ("yaml", "stringData:\n  credentials: |\n    [default]\n    secret = blockFAKE01\n", "blockFAKE01"),
    ("yaml", "users:\n- name: admin\n  user:\n    token: kubeconfigFAKE01\n", "kubeconfigFAKE01"),
    ("yaml", "users:\n- name: admin\n  user:\n    client-key-data: LS0tFAKEclientkeydata\n", "LS0tFAKEclientkeydata"),
    ("yaml", "auth:\n  clientSecret: 'sq-yaml-FAKE'\n", "sq-yaml-FAKE"),
    ("yaml", "aws_secret_access_key: yamlawsFAKE/0123\n", "yamlawsFAKE/0123"),
    ("yaml", "oidc:\n  client_secret: >-\n    folded FAKE\n    secret\n", "folded FAKE"),
    ("command", "mysql -h db -u root -pMyFAKEpw1 shop < dump.sql", "MyFAKEpw1"),
    ("command", "mysqldump --single-transaction -uroot -p'quotFAKEpw' shop", "quotFAKEpw"),
    ("command", "mysqladmin ping -h 127.0.0.1 -u health -phcFAKEpw", "hcFAKEpw"),
    ("command", "curl -sf -u admin:curlFAKEpw https://api.acme.example/health", "curlFAKEpw"),
    ("command", "curl --user deploy:userFAKEpw https://nexus.acme.example", "userFAKEpw"),
    ("command", "curl -H 'Authorization: Bearer hdrFAKEtok01' https://api.acme.example", "hdrFAKEtok01"),
    ("command", "app --db-password=eqFAKEpw --verbose", "eqFAKEpw"),
    ("command", "app --api-token spaceFAKEtok --port 8080", "spaceFAKEtok"),
    ("command", "sshpass -p sshFAKEpw ssh deploy@10.0.0.5", "sshFAKEpw"),
    ("command", "redis-cli -h cache -a redisFAKEpw ping", "redisFAKEpw"),
    ("command", "openssl pkcs12 -in cert.p12 -passin pass:p12FAKEpw -nodes", "p12FAKEpw"),
    ("command", "helm install app ./chart --set auth.password=helmFAKEpw --set image.tag=1.2", "helmFAKEpw"),
    ("command", "kubectl create secret generic db --from-literal=password=litFAKEpw", "litFAKEpw"),
    ("command", "docker login -u robot -p dockerFAKEpw registry.acme.example", "dockerFAKEpw"),
]:
    masked(context, text, secret)

# ---- URLs with credentials (text and env values)
for url, secret in [
    ("postgres://app:pgFAKEurl@db.shop.svc:5432/shop?sslmode=require", "pgFAKEurl"),
    ("redis://:redisFAKEurl@cache:6379/0", "redisFAKEurl"),
    ("mongodb+srv://admin:mongoFAKEurl@cluster0.example.mongodb.net/app", "mongoFAKEurl"),
    ("amqp://guest:amqpFAKEurl@rabbitmq:5672/", "amqpFAKEurl"),
    ("https://deploy:p%40ssFAKE@nexus.acme.example/repository/", "p%40ssFAKE"),
    ("mysql://root:my@FAKE@mysql:3306/shop", "my@FAKE"),
    ("jdbc:postgresql://report:jdbcFAKE@db:5432/shop", "jdbcFAKE"),
    (
        "https://acme.blob.core.windows.net/backups/db.gz?sv=2022-11-02&ss=b&sp=r&se=2030-01-01&sig=sasFAKE%2B0%3D",
        "sasFAKE%2B0%3D",
    ),
    ("https://hooks.slack.com/services/T00000000/B00000000/FAKEFAKEFAKEFAKEFAKE0000", "FAKEFAKEFAKEFAKEFAKE0000"),
    ("https://discord.com/api/webhooks/000000000000/FAKEdiscordWebhook-0000", "FAKEdiscordWebhook-0000"),
    ("https://api.acme.example/v1/export?api_key=urlkeyFAKE&format=csv", "urlkeyFAKE"),
    ("https://s3.amazonaws.com/b/o?X-Amz-Credential=AKIAFAKE%2F20240101&X-Amz-Signature=abcFAKE0sig", "abcFAKE0sig"),
    ("ftp://backup:ftpFAKE@files.acme.example/nightly/", "ftpFAKE"),
]:
    masked("url", f"fetching {url} (attempt 1)", secret)
    masked("env", env("UPSTREAM_URL", url), secret, "UPSTREAM_URL")
masked("log", "DSN app:goFAKEdsn@tcp(mysql:3306)/shop?parseTime=true", "goFAKEdsn")
masked(
    "log",
    "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=sbFAKEkey0=",
    "sbFAKEkey0=",
)
masked(
    "log",
    "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=azFAKEkey0+/==;EndpointSuffix=core.windows.net",
    "azFAKEkey0+/==",
)

# ---- container args and commands (credentials split over args)
for obj, secret in [
    (args("--password", "argFAKEpw01"), "argFAKEpw01"),
    (args("--api-token", "argFAKEtok01"), "argFAKEtok01"),
    (args("-password", "singledashFAKE"), "singledashFAKE"),
    (args("--client-secret", "argFAKEcs01", "--client-id", "web"), "argFAKEcs01"),
    (args("--password=eqargFAKE01"), "eqargFAKE01"),
    (args("-u", "root", "-pmysqlargFAKE"), "mysqlargFAKE"),
    (args("-uroot", "-pattachedFAKE"), "attachedFAKE"),
    (args("-h", "db", "-pclientFAKE", command=["mysql"]), "clientFAKE"),
    (args("--single-transaction", "-pdumpFAKE", "shop", command=["/usr/bin/mysqldump"]), "dumpFAKE"),
    (args("-u", "admin:curlargFAKE", "https://x.example", command=["curl"]), "curlargFAKE"),
    (args("--user", "deploy:userargFAKE", command=["curl"]), "userargFAKE"),
    (args("-c", "mysql -uroot -pshellFAKE -e 'select 1'", command=["/bin/sh"]), "shellFAKE"),
    (args("-c", "export API_KEY=exportFAKE && ./run", command=["sh"]), "exportFAKE"),
    (args("-p", "sshpassFAKE", "ssh", "host", command=["sshpass"]), "sshpassFAKE"),
    (args("-h", "cache", "-a", "redisargFAKE", "ping", command=["redis-cli"]), "redisargFAKE"),
    (args("--set", "postgresql.auth.password=setFAKE01"), "setFAKE01"),
    (args("-e", "POSTGRES_PASSWORD=dockerenvFAKE"), "dockerenvFAKE"),
    (args("--header", "Authorization: Bearer headerargFAKE"), "headerargFAKE"),
    (args("--token", JWT), JWT[:30]),
]:
    masked("args", obj, secret)

# ---- annotations, ConfigMaps, probe headers, messages
for key, value in [
    ("example.com/api-token", "annFAKEtok01"),
    ("acme.io/db-password", "annFAKEpw01"),
    ("vault.hashicorp.com/client-secret", "annFAKEcs01"),
    ("webhook.acme.io/signing-key", "annFAKEsk01"),
]:
    masked("annotation", annotation(key, value), value, key)
masked(
    "annotation",
    annotation(
        "kubectl.kubernetes.io/last-applied-configuration",
        json.dumps({"kind": "Secret", "stringData": {"password": "lastappliedFAKE"}}),
    ),
    "lastappliedFAKE",
)
masked("annotation", annotation("acme.io/notes", "rotated; old password=annotFAKEold"), "annotFAKEold")
for key, value in [
    ("password", "cmFAKEpw01"),
    ("db.password", "cmFAKEpw02"),
    ("api-key", "cmFAKEkey01"),
    ("tls.key", "cmFAKEtls01"),
    ("client_secret", "cmFAKEcs01"),
    ("AUTH_TOKEN", "cmFAKEtok01"),
    ("htpasswd", "admin:$2y$05$cmFAKEhash"),
    (".dockerconfigjson", '{"auths":{"r.example":{"auth":"cmFAKEauth"}}}'),
]:
    masked("configmap", configmap(key, value), value, key)
masked(
    "configmap",
    configmap("application.properties", "server.port=8080\nspring.datasource.password=propFAKE01\n"),
    "propFAKE01",
    "server.port=8080",
)
masked(
    "configmap", configmap("config.yaml", "log: info\nupstream:\n  token: cfgyamlFAKE\n"), "cfgyamlFAKE", "log: info"
)
masked(
    "configmap",
    configmap("settings.xml", "<servers><server><id>nexus</id><password>mvnFAKE01</password></server>"),
    "mvnFAKE01",
)
masked(
    "configmap",
    configmap("redis.conf", "port 6379\nrequirepass redisconfFAKE\nmasterauth redisconfFAKE\n"),
    "redisconfFAKE",
)
masked("configmap", configmap(".pgpass", "db.shop.svc:5432:shop:app:pgpassFAKE01"), "pgpassFAKE01")
masked(
    "configmap",
    configmap("kafka.properties", 'sasl.jaas.config=PlainLoginModule required username="u" password="jaasFAKE";'),
    "jaasFAKE",
)
masked("log", "writing ~/.netrc: machine api.acme.example login deploy password netrcFAKE01", "netrcFAKE01")
masked("log", "login attempt for user=bob with password: letmeinfake now rejected", "letmeinfake", "now rejected")
masked("event", event("init: using password: correcthorsefake for the bootstrap user"), "correcthorsefake")
masked("yaml", "smtp:\n  password:\n    nextlineFAKE01\n  port: 587\n", "nextlineFAKE01")
masked("env", env("JAVA_OPTS", "-Xmx512m -Djavax.net.ssl.trustStorePassword=trustFAKE01"), "trustFAKE01", "-Xmx512m")
for header, value, secret in [
    ("Authorization", "Bearer probeFAKEtok", "probeFAKEtok"),
    ("Authorization", "Basic cHJvYmU6RkFLRQ==", "cHJvYmU6RkFLRQ=="),
    ("X-Api-Key", "probeFAKEkey", "probeFAKEkey"),
    ("X-Auth-Token", "probeFAKEauth", "probeFAKEauth"),
    ("Cookie", "session=probeFAKEcookie", "probeFAKEcookie"),
    ("X-Health-Check", f"token={GHP}", GHP),
]:
    masked("probe", probe(header, value), secret, header)
for message, secret in [
    ("panic: connect failed: postgres://app:termFAKE@db:5432/shop", "termFAKE"),
    ("Error: invalid configuration: password=termFAKE02 rejected", "termFAKE02"),
    (f"fatal: 401 from api using Authorization: Bearer {JWT}", JWT[:30]),
    ('config error: {"api_key": "termjsonFAKE"} is not valid', "termjsonFAKE"),
]:
    masked("termination", termination(message), secret)
    masked("termination", termination(message, waiting=True), secret)
for message, secret in [
    (
        'Failed to pull image "registry.acme.example/app:1": https://robot:evFAKEpw@registry.acme.example/v2/ 401',
        "evFAKEpw",
    ),
    (
        'Readiness probe failed: Get "http://10.0.0.7:8080/ready?token=evFAKEtok": context deadline exceeded',
        "evFAKEtok",
    ),
    ("Liveness probe errored: sending Authorization: Bearer evFAKEbearer01", "evFAKEbearer01"),
    ("Job failed: exec mysql -uroot -pevFAKEmysql", "evFAKEmysql"),
]:
    masked("event", event(message), secret)
    masked("event", event(message, new_api=True), secret)
masked(
    "object",
    {
        "kind": "Secret",
        "metadata": {"name": "db"},
        "type": "Opaque",
        "data": {"password": b64("objFAKEpw01")},
        "stringData": {"token": "objFAKEtok01"},
    },
    "objFAKEtok01",
)
masked(
    "object",
    {
        "kind": "SecretList",
        "items": [{"metadata": {"name": "db"}, "type": "Opaque", "data": {"pw": b64("listFAKE01")}}],
    },
    b64("listFAKE01"),
)
masked(
    "object", {"metadata": {"name": "db"}, "type": "Opaque", "data": {"pw": b64("nokindFAKE01")}}, b64("nokindFAKE01")
)
masked("object", {"findings": [{"evidence": {"message": "auth failed: password=deepFAKE01"}}]}, "deepFAKE01")
GO_ERROR = (  # an API server refusal quotes the object in Go syntax
    'Job.batch "sync" is invalid: spec.template: Invalid value: core.PodTemplateSpec{ObjectMeta:v1.ObjectMeta{'
    'Annotations:map[string]string{"api-token":"goFAKEann01"}}, Spec:core.PodSpec{Containers:[]core.Container{'
    'core.Container{Name:"app", Env:[]core.EnvVar{core.EnvVar{Name:"DB_PASSWORD", Value:"goFAKEenv01", '
    "ValueFrom:(*core.EnvVarSource)(nil)}}}}}}: field is immutable"
)
masked("log", GO_ERROR, "goFAKEann01", "field is immutable")
masked("event", event(GO_ERROR), "goFAKEenv01", "field is immutable")
masked(
    "termination",
    termination("sk-Proj0FAKE1234567890abcdefGHIJ rejected by upstream"),
    "sk-Proj0FAKE1234567890abcdefGHIJ",
)
masked("object", {"config": {"database": {"password": "dictFAKE01", "client_secret": "dictFAKE02"}}}, "dictFAKE01")
masked("object", {"config": {"database": {"password": "dictFAKE01", "client_secret": "dictFAKE02"}}}, "dictFAKE02")
masked(
    "object",
    {"users": [{"name": "ci", "user": {"token": "kcFAKEtoken01", "client-key-data": "LS0tkcFAKE"}}]},
    "LS0tkcFAKE",
)

# ================= readable: references, settings and ordinary text that are not credentials
for name, value in [
    ("SECRET_NAME", "db-credentials"),
    ("PASSWORD_FILE", "/etc/app/pw"),
    ("TOKEN_TTL_SECONDS", "3600"),
    ("AUTH_ENABLED", "true"),
    ("OIDC_ISSUER_URL", "https://login.acme.example/realms/shop"),
    ("DB_HOST", "db.shop.svc"),
    ("REDIS_PORT", "6379"),
    ("TOKEN_PATH", "/var/run/secrets/tokens/api"),
    ("SECRET_REF", "shop/db-credentials"),
    ("KMS_KEY_ID", "arn:aws:kms:eu-west-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    ("AWS_ACCESS_KEY_ID_FILE", "/var/run/aws/key-id"),
    ("API_KEY_HEADER", "X-Api-Key"),
    ("AUTH_TYPE", "oidc"),
    ("PASSWORD_MIN_LENGTH", "12"),
    ("SESSION_TIMEOUT", "30m"),
    ("COOKIE_DOMAIN", "shop.acme.example"),
    ("TOKENIZER", "bert-base-uncased"),
    ("MAX_TOKENS", "4096"),
    ("PWD", "/app"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/var/secrets/google/key.json"),
    ("JWT_AUDIENCE", "shop-api"),
    ("TOKEN_ENDPOINT", "https://login.acme.example/oauth/token"),
    ("SECRETS_DIR", "/run/secrets"),
    ("ALLOW_EMPTY_PASSWORD", "yes"),
    ("CREDENTIALS_SECRET_NAME", "aws-creds"),
    ("DB_PASSWORD", "$(DB_PASSWORD_FROM_SECRET)"),
    ("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock"),
    ("AUTHOR", "platform-team"),
    ("SECRET_STORE", "vault"),
    ("TOKEN_EXPIRES_IN", "3600"),
]:
    readable("env", env(name, value), value)
for key, value in [
    ("nginx.ingress.kubernetes.io/auth-url", "https://auth.acme.example/oauth2/auth"),
    ("nginx.ingress.kubernetes.io/auth-signin", "https://auth.acme.example/oauth2/start?rd=$escaped_request_uri"),
    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
    ("checksum/secret", "3a7bd3e2360a3d29eea436fcfb7e44c735d117c4"),
    ("checksum/config", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("cert-manager.io/issuer", "letsencrypt-prod"),
    ("nginx.ingress.kubernetes.io/auth-secret", "shop/basic-auth"),
    ("nginx.ingress.kubernetes.io/auth-realm", "Authentication Required - shop"),
    ("meta.helm.sh/release-name", "checkout"),
]:
    readable("annotation", annotation(key, value), value)
for key, value in [
    ("LOG_LEVEL", "debug"),
    ("tokenizer.json", '{"model": "bert"}'),
    ("token_count", "42"),
    ("secretName", "my-tls"),
    ("nginx.conf", "server { listen 8080; location / { proxy_pass http://app; } }"),
    ("redis.conf", "port 6379\nmaxmemory 2gb\nappendonly yes\n"),
]:
    readable("configmap", configmap(key, value), value)
for header, value in [("X-Request-Source", "kubelet"), ("Host", "checkout.shop.svc"), ("Accept", "application/json")]:
    readable("probe", probe(header, value), value)
for items in [
    ("--password-file", "/etc/app/pw"),
    ("--secret-name", "db-credentials"),
    ("--token-ttl", "1h"),
    ("--enable-bootstrap-token-auth", "--authorization-mode=Node,RBAC"),
    ("--tls-private-key-file=/pki/key.pem",),
    ("--password-stdin", "-u", "robot"),
    ("-p", "8080:80", "-u", "1000:1000"),
    ("--auth-mode", "basic"),
]:
    readable("args", args(*items), items[-1])
readable("args", args("run", "-u", "app", "-p8080:80", "img", command=["docker"]), "-p8080:80")
for message in [
    "spec.volumes[0].secret.secretName: Required value",
    "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",
    'MountVolume.SetUp failed for volume "creds" : secret "db-credentials" not found',
    "Error: couldn't find key password in Secret shop/db-credentials",
    'Error from server (NotFound): secrets "db-credentials" not found',
    'Failed to pull image "ghcr.io/acme/token-exchange:2.1.0": rpc error: code = NotFound',
    "Successfully assigned shop/token-service-6d4cf56db6-x2k9p to node-a1",
    "failed to fetch oauth token: unexpected status: 401 Unauthorized",
    "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope",
    "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.",
    "Back-off restarting failed container app in pod checkout-7d9f8b6c5d-x2k9p_shop(0f8e6a1c-2b3d-4e5f-8a9b)",
]:
    readable("event", event(message), message[:30])
for message in [
    "OOMKilled after 3 restarts",
    "panic: runtime error: index out of range [3] with length 3",
    'Error: secret "db-credentials" not found',
    "x509: certificate signed by unknown authority",
]:
    readable("termination", termination(message), message)
for text in [
    "2024-05-02T10:14:03Z INFO http: GET /api/v1/orders 200 12ms user=bob",
    "pulled image ghcr.io/acme/checkout@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "deployed commit 3a7bd3e2360a3d29eea436fcfb7e44c735d117c4 (resourceVersion 482913)",
    "request id 0f8e6a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b finished",
    "tokenizer=bert token_count: 42 max_tokens=512",
    "Bearer authentication required for /admin",
    "basic auth enabled for the metrics endpoint",
    "token refresh scheduled in 300s; token_expiry=2024-05-02T11:00:00Z",
    "GET /api/v1/namespaces/shop/secrets/db-credentials 403",
    "automountServiceAccountToken: false",
    "password: true",
    "failed to get secret: context deadline exceeded",
    "error validating token: crypto/rsa: verification error",
    "kube-apiserver --token-auth-file=/etc/kubernetes/tokens.csv --anonymous-auth=false",
    "continue_token=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDgyOTEzLCJzdGFydCI6ImNoZWNrb3V0In0",
    "Token refreshed successfully for client web",
    "scheduled job sk-learn-model-training-nightly-29581 on node-a1",
    "nginx: proxy_pass http://auth-service:8080; auth_request /auth;",
]:
    readable("log", text)
for text in [
    '{"token_count": 42, "tokenizer": "bert", "secretName": "my-tls"}',
    '{"automountServiceAccountToken": true, "serviceAccountName": "checkout"}',
    '{"token_type": "Bearer", "expires_in": 3599, "scope": "openid"}',
    '{"password": "", "token": null, "secret": "${DB_SECRET}"}',
    '{"page": {"continue_token": "offset:100", "returned": 100}}',
    '{"valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}',
]:
    readable("json", text)
for text in [
    "tls:\n- hosts: [shop.acme.example]\n  secretName: my-tls\n",
    "env:\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: db-credentials\n      key: password\n",
    "imagePullSecrets:\n- name: regcred\n",
    "existingSecret: db-credentials\nauth:\n  enabled: true\n  existingSecretPasswordKey: password\n",
    "type: kubernetes.io/service-account-token\n",
    'rules:\n- resources: ["secrets"]\n  verbs: ["get", "list"]\n',
    "image: ghcr.io/acme/password-reset:v3.2.1\n",
    "credentials:\n  # from the cluster store\n  existingSecret: aws-creds\n  region: eu-west-1\n",
]:
    readable("yaml", text)
for text in [
    "https://shop.acme.example/api/v1/orders?page=2&limit=50",
    "https://user@git.acme.example/acme/app.git",
    "http://10.0.0.7:8080/healthz",
    "postgres://db.shop.svc:5432/shop?sslmode=require",
]:
    readable("url", text)
