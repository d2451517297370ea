"""CloudPilot settings: one object, grouped, loaded from `CLOUDPILOT_*` variables and an optional YAML file.

Precedence (highest first): explicit arguments (the CLI), environment variables, the YAML file, defaults.
Nested fields use a double underscore: `CLOUDPILOT_SAFETY__ALLOW_WRITE=true`,
`CLOUDPILOT_K8S__CACHE_TTL_SECONDS=10`. Lists take JSON: `CLOUDPILOT_SAFETY__NAMESPACE_DENY='["kube-system"]'`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

TOOLSETS = ("core", "istio", "diagnose", "rca", "fix", "runbooks", "incidents", "agents")


class KubeSettings(BaseModel):
    """How clusters are reached."""

    kubeconfig: Path | None = Field(None, description="kubeconfig file; default: $KUBECONFIG, then ~/.kube/config.")
    context: str | None = Field(None, description="Default kubeconfig context; default: the current one.")
    default_cluster: str | None = Field(
        None, description="Registry name or context used when a tool is given no `cluster`."
    )
    in_cluster: Literal["auto", "always", "never"] = Field(
        "auto", description="Use the pod's service account: auto = when running inside a pod."
    )
    service_account_dir: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount"),
        description="Folder holding the pod's service account `token`, `ca.crt` and `namespace` (in-cluster mode); "
        "the API server is $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.",
    )
    request_timeout_seconds: float = Field(20.0, gt=0, description="Timeout of one API request.")
    cache_ttl_seconds: float = Field(
        30.0, ge=0, description="How long overview and snapshot data are reused (0 disables caching)."
    )
    discovery_ttl_seconds: float = Field(300.0, ge=0, description="How long API discovery is reused.")
    max_connections: int = Field(
        32, ge=1, le=512, description="HTTP connections kept per cluster (size it to the concurrent calls expected)."
    )
    fanout_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="How long the fleet_* tools wait for each cluster; the rest are reported."
    )
    fanout_max_clusters: int = Field(50, ge=1, le=1000, description="Most clusters one fleet_* call reads.")


class StoreSettings(BaseModel):
    """The store (cluster registry, audit log, plans, approvals, outbox, incidents): an embedded SQLite file, or
    PostgreSQL when `url` is set (several replicas share it; the team's checkpoints go there too)."""

    path: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("cloudpilot")) / "cloudpilot.db",
        description="SQLite file; created with mode 0600. Unused when `url` is set.",
    )
    url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:5432/db); a secret: never logged or returned.",
    )
    pool_size: int = Field(
        8, ge=1, le=100, description="PostgreSQL: most connections one process keeps open (grows from one as needed)."
    )


class SafetySettings(BaseModel):
    """What CloudPilot may change. Read-only unless switched on."""

    allow_write: bool = Field(False, description="List and allow mutating tools.")
    allow_destructive: bool = Field(False, description="Also list and allow deleting tools.")
    namespace_allow: list[str] = Field(
        default_factory=list, description="If set, only these namespaces are visible (glob patterns)."
    )
    namespace_deny: list[str] = Field(default_factory=list, description="Namespaces never shown (globs).")
    protected_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease", "istio-system"],
        description="Namespaces in which changes are refused unless explicitly allowed.",
    )


class OutputSettings(BaseModel):
    """Bounds on what a tool returns to a model."""

    default_limit: int = Field(50, ge=1, le=5000, description="Items per page when a tool gets no `limit`.")
    max_chars: int = Field(
        60_000, ge=1_000, description="Text renderings longer than this are cut, with a note saying so."
    )
    log_max_bytes: int = Field(64_000, ge=1_000, description="Byte cap on returned log text.")
    max_structured_bytes: int = Field(
        256_000,
        ge=10_000,
        description="Structured results larger than this (as JSON) are cut to fit, marked truncated: true.",
    )


class LimitSettings(BaseModel):
    """Caps on every input that sizes work. Each breach is a clear error naming the argument and the cap."""

    argument_chars: int = Field(1_000_000, ge=1_000, description="Longest string accepted in any one tool argument.")
    arguments_bytes: int = Field(2_000_000, ge=10_000, description="Largest tool call, all arguments as JSON.")
    manifest_bytes: int = Field(512_000, ge=1_000, description="Largest manifest accepted by resource_apply.")
    patch_bytes: int = Field(256_000, ge=1_000, description="Largest patch accepted by resource_patch.")
    yaml_aliases: int = Field(64, ge=0, description="Most YAML aliases (*ref) in one document.")
    yaml_depth: int = Field(64, ge=2, description="Deepest nesting of a YAML/JSON document.")
    forecast_points: int = Field(20_000, ge=100, description="Most points a forecast reads or predicts.")
    mask_chars: int = Field(
        8_000_000, ge=100_000, description="Longest text masked; longer output is cut before masking."
    )


class PrometheusSettings(BaseModel):
    """Where metrics come from for RCA and forecasting."""

    url: str | None = Field(None, description="Prometheus base URL, e.g. http://prometheus:9090.")
    bearer_token: str | None = Field(None, description="Sent as Authorization: Bearer; never returned.")
    timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one Prometheus query.")
    verify_tls: bool = Field(True, description="Verify Prometheus's TLS certificate.")


class TracingSettings(BaseModel):
    """Where trace spans come from for RCA: a Jaeger query API."""

    url: str | None = Field(None, description="Jaeger query base URL, e.g. http://jaeger-query:16686.")
    bearer_token: str | None = Field(None, description="Sent as Authorization: Bearer; never returned.")
    timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one Jaeger query.")
    verify_tls: bool = Field(True, description="Verify Jaeger's TLS certificate.")
    max_traces: int = Field(500, ge=1, le=5_000, description="Traces fetched per service and window.")
    max_spans: int = Field(100_000, ge=1, le=1_000_000, description="Spans kept in all; more are dropped.")


class DiagnosisSettings(BaseModel):
    """When a state that raises no Warning event counts as stuck."""

    gated_minutes: int = Field(
        15, ge=1, le=10_080, description="A pod held by scheduling gates longer than this is reported."
    )
    paused_minutes: int = Field(
        60, ge=1, le=10_080, description="A paused Deployment holding back a change longer than this is reported."
    )
    lb_pending_minutes: int = Field(
        15, ge=1, le=10_080, description="A LoadBalancer Service without an address longer than this is reported."
    )
    suspended_hours: int = Field(24, ge=1, le=8_760, description="A Job suspended longer than this is reported.")
    terminating_minutes: int = Field(
        30, ge=1, le=10_080, description="A namespace terminating longer than this is reported."
    )


class RcaSettings(BaseModel):
    """Root-cause analysis defaults."""

    threshold: float = Field(0.65, ge=0, le=1, description="Candidates scoring below this are not reported.")
    window_minutes: int = Field(10, ge=1, le=1440, description="Default analysis window.")
    step_seconds: int = Field(15, ge=1, description="Default query_range step.")


class ForecastSettings(BaseModel):
    """Load prediction and replica recommendation defaults."""

    min_replicas: int = Field(1, ge=0, description="Recommendations never go below this.")
    max_replicas: int = Field(20, ge=1, description="Recommendations are clamped to this (seeds: 20).")
    history_days: int = Field(14, ge=1, description="History used to fit a forecast.")


class FixSettings(BaseModel):
    """The fix loop: plans, approval policy, verification."""

    auto_approve: list[str] = Field(
        default_factory=list,
        description='Plan actions applied without a confirmation, e.g. ["scale", "rollout_restart", '
        '"cordon"]; never deletions, patches or protected namespaces.',
    )
    allow_protected_override: bool = Field(
        False, description="Let a plan change a protected namespace when the call names it in override_protected."
    )
    verify_timeout_seconds: float = Field(
        300.0, gt=0, description="How long fix_apply waits for a rollout to complete before rolling back."
    )
    plan_ttl_minutes: int = Field(60, ge=1, description="A plan not applied within this time expires.")
    approval: list[Literal["elicitation", "confirm", "policy"]] | None = Field(
        None,
        description="How a plan may be approved: elicitation (the client asks its user), confirm (the "
        "confirm=<plan id> argument), policy (fix.auto_approve). Default: all three over stdio; elicitation "
        "and policy over HTTP, where a remote model could otherwise approve its own plans.",
    )


class LlmSettings(BaseModel):
    """The model the agent team talks to: any OpenAI-compatible chat-completions server."""

    base_url: str | None = Field(
        None, description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1, http://localhost:11434/v1."
    )
    api_key: SecretStr | None = Field(None, description="API key; never logged, returned or put in a prompt.")
    model: str | None = Field(None, description="Model name, e.g. gpt-4o-mini, qwen2.5:14b.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one model request.")
    max_retries: int = Field(2, ge=0, le=10, description="Retries of a failed model request (5xx, timeouts).")
    streaming: bool = Field(True, description="Stream the model's answers (tokens appear as they come).")

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class AgentSettings(BaseModel):
    """The agent team: threads, budgets, approvals, the coder's sandbox, runbooks."""

    checkpoint_path: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("cloudpilot")) / "threads.db",
        description="SQLite file of conversation threads and pending approvals (checkpoints).",
    )
    max_steps: int = Field(40, ge=1, le=1000, description="Most agent steps (model calls and handoffs) per run.")
    max_tool_calls: int = Field(30, ge=1, le=1000, description="Most tool calls per run.")
    max_tokens: int = Field(200_000, ge=1_000, description="Most model tokens (in + out) per run.")
    approval_ttl_minutes: int = Field(
        60, ge=1, description="A pending approval expires after this (never later than its plan)."
    )
    sandbox: bool = Field(
        False, description="Let the coder run model-written Python (numpy/pandas, no network) in a sandbox."
    )
    sandbox_cpu_seconds: int = Field(10, ge=1, le=600, description="CPU limit of one sandbox run.")
    sandbox_memory_mb: int = Field(512, ge=64, le=16_384, description="Memory limit of one sandbox run.")
    sandbox_wall_seconds: float = Field(20.0, gt=0, le=600, description="Wall-clock limit of one sandbox run.")
    runbook_folders: list[Path] = Field(
        default_factory=list, description="Extra folders of markdown runbooks, searched beside the shipped ones."
    )


GRADES = ("info", "warning", "critical", "human-help")


class Route(BaseModel):
    """One routing rule: a notification that matches every condition goes to `to`."""

    to: str = Field(
        description="Destination: slack:<channel id> or feishu:<chat id> (the bot must be in it).",
        pattern=r"^(slack|feishu):[A-Za-z0-9_#.-]{1,80}$",
    )
    min_grade: Literal["info", "warning", "critical", "human-help"] = Field(
        "info", description="Lowest grade routed (human-help ranks above critical)."
    )
    clusters: list[str] = Field(default_factory=list, description="Cluster globs; empty = any.")
    namespaces: list[str] = Field(default_factory=list, description="Namespace globs; empty = any.")


class NotifySettings(BaseModel):
    """Where the team's outcomes go (notifiers/)."""

    log: bool = Field(True, description="Write every notification to the server log.")
    webhook_url: str | None = Field(None, description="POST each notification as signed JSON to this URL.")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key for the webhook's X-CloudPilot-Signature header."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="Timeout of one delivery request.")
    min_severity: Literal["info", "warning", "critical"] = Field(
        "info", description="Notifications below this severity are not sent."
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="Chat routing rules, all that match apply; none match → slack.default_channel and "
        "feishu.default_chat.",
    )
    dedup_window_seconds: float = Field(
        600.0, ge=0, le=86_400, description="The same alert again within this: one message, updated with a count."
    )
    per_channel_per_second: float = Field(
        1.0, gt=0, le=100, description="Most messages per second into one channel (Slack allows about 1)."
    )
    give_up_after_minutes: float = Field(
        1440.0, gt=0, description="A chat message still undelivered after this is marked failed (and logged)."
    )


class SlackSettings(BaseModel):
    """The Slack app: notifications, the bot (Events API over HTTP or Socket Mode), approvals."""

    bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-…): chat:write and the read scopes.")
    signing_secret: SecretStr | None = Field(None, description="Signing secret: verifies every HTTP request.")
    app_token: SecretStr | None = Field(None, description="App-level token (xapp-…, connections:write): Socket Mode.")
    mode: Literal["http", "socket"] = Field("http", description="Receive events over HTTP or over Socket Mode.")
    default_channel: str | None = Field(None, description="Channel id notifications go to when no route matches.")
    webhook_url: SecretStr | None = Field(
        None, description="Incoming-webhook URL (a secret): notifications only, no buttons, no updates."
    )
    api_url: str = Field("https://slack.com/api/", description="Web API base URL.")


class FeishuSettings(BaseModel):
    """The Feishu/Lark app: notifications as cards, the bot (event webhook or long connection), approvals."""

    app_id: str | None = Field(None, description="App ID (cli_…).")
    app_secret: SecretStr | None = Field(None, description="App secret.")
    verification_token: SecretStr | None = Field(None, description="Event subscription verification token.")
    encrypt_key: SecretStr | None = Field(None, description="Event encrypt key: requests are signed and encrypted.")
    mode: Literal["webhook", "ws"] = Field("webhook", description="Receive events by HTTP webhook or long connection.")
    default_chat: str | None = Field(None, description="Chat id (oc_…) notifications go to when no route matches.")
    domain: str = Field("https://open.feishu.cn", description="Open API domain; https://open.larksuite.com for Lark.")
    webhook_url: SecretStr | None = Field(None, description="Custom-bot webhook URL (a secret): notifications only.")
    webhook_secret: SecretStr | None = Field(None, description="The custom bot's signing secret.")


class Approvers(BaseModel):
    """Who may approve plans touching these clusters and namespaces from chat."""

    clusters: list[str] = Field(default_factory=lambda: ["*"], description="Cluster globs.")
    namespaces: list[str] = Field(default_factory=lambda: ["*"], description="Namespace globs.")
    slack_users: list[str] = Field(default_factory=list, description="Slack user ids (U…).")
    slack_groups: list[str] = Field(default_factory=list, description="Slack user-group ids (S…).")
    feishu_users: list[str] = Field(default_factory=list, description="Feishu open_ids (ou_…).")
    feishu_groups: list[str] = Field(
        default_factory=list, description="Feishu user-group ids (members read with contact:group:readonly)."
    )


class BotSettings(BaseModel):
    """The chat bots (bots/): who may approve, the two-person rule, the HTTP endpoint."""

    host: str = Field("127.0.0.1", description="HTTP bind address of the bots' endpoints.")
    port: int = Field(3000, ge=1, le=65535, description="HTTP port of the bots' endpoints.")
    approvers: list[Approvers] = Field(
        default_factory=list, description="Allow-lists; nobody may approve from chat until one is set."
    )
    two_person_namespaces: list[str] = Field(
        default_factory=list, description="Namespace globs where a plan needs two different approvers."
    )
    two_person_destructive: bool = Field(True, description="Plans that delete or replace need two approvers.")
    replay_window_seconds: int = Field(
        300, ge=30, le=3600, description="Requests older than this, or seen before, are refused."
    )
    progress_seconds: float = Field(1.5, ge=0, le=60, description="Least time between edits of a progress message.")


WatchSource = Literal["events", "pods", "nodes", "workloads", "configmaps", "secrets", "istio"]


class WatchSettings(BaseModel):
    """The event pipeline (watch/): which signals become incidents, and what is done about them."""

    clusters: list[str] = Field(
        default_factory=list, description="Clusters watched (registry names or contexts); empty = the default one."
    )
    namespaces: list[str] = Field(default_factory=list, description="Namespaces watched; empty = all.")
    reasons_extra: list[str] = Field(
        default_factory=list, description="Event reasons that count as critical besides the shipped catalogue."
    )
    reasons_ignored: list[str] = Field(default_factory=list, description="Catalogue reasons to ignore.")
    window_seconds: float = Field(600.0, gt=0, description="Signals of one root object this close are one incident.")
    quiet_seconds: float = Field(900.0, gt=0, description="An incident with no signal for this long resolves.")
    flap_limit: int = Field(3, ge=1, description="Reopened this often within an hour, an incident is flapping.")
    sources: list[WatchSource] = Field(
        default_factory=lambda: list(get_args(WatchSource)),
        description="What is watched per cluster. Secrets are read only to hash their content for the change "
        "history; drop `secrets` where CloudPilot may not list them.",
    )
    investigate: bool = Field(
        True, description="Start the team's autofix on each new incident (plans still wait for approval)."
    )
    investigations_at_once: int = Field(2, ge=1, le=50, description="Incidents investigated at the same time.")
    investigations_per_hour: int = Field(
        30, ge=0, le=10_000, description="Investigations started per rolling hour; beyond, incidents are only recorded."
    )
    policy_file: Path | None = Field(
        None,
        description="YAML policy of automatic fixes, maintenance windows, rate limit and circuit breaker (see README). "
        "Without one, every fix waits for a person.",
    )
    in_server: bool = Field(False, description="Run the event pipeline inside `cloudpilot serve` too.")
    token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager and other senders must present (required to receive)."
    )
    host: str = Field("127.0.0.1", description="HTTP bind address of the receivers (/alertmanager, /events).")
    port: int = Field(9095, ge=1, le=65535, description="HTTP port of the receivers.")
    max_body_bytes: int = Field(1_000_000, ge=1_000, le=20_000_000, description="Largest request body accepted.")
    leader_election: bool = Field(
        False,
        description="Several watcher processes (replicas): each cluster is watched only by the holder of its "
        "Lease `cloudpilot-watch-<cluster>` (coordination.k8s.io); the others take over when it stops.",
    )
    lease_namespace: str | None = Field(
        None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace of the watch Leases; default: the pod's own namespace in a pod, else `default`.",
    )
    lease_identity: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="This process's name in the Leases' holderIdentity; default: hostname_pid_random.",
    )
    lease_duration_seconds: int = Field(
        15, ge=1, le=3_600, description="How long others wait after a Lease stops being renewed before taking over."
    )
    lease_renew_deadline_seconds: float = Field(
        10.0, gt=0, le=3_600, description="A leader that could not renew for this long stops watching that cluster."
    )
    lease_retry_seconds: float = Field(2.0, gt=0, le=600, description="Time between tries to acquire or renew.")

    @model_validator(mode="after")
    def _lease_timings(self) -> WatchSettings:
        if not self.lease_retry_seconds < self.lease_renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "lease timings must satisfy lease_retry_seconds < lease_renew_deadline_seconds < "
                "lease_duration_seconds (a leader stops before another may take over)"
            )
        return self


class AccessRule(BaseModel):
    """One entry of the per-identity access policy: who it is for, which toolsets they see, whether writes."""

    match: list[str] = Field(
        min_length=1,
        max_length=100,
        description="Callers it is for (any one matches): patterns on `oidc:<principal>`, `token:<name>`, "
        "`group:<name>` (OIDC groups claim) and `local`; `*` is a wildcard, e.g. `oidc:*@example.com`.",
    )
    toolsets: list[str] = Field(
        default_factory=lambda: ["*"], description=f"Toolsets they may see and use, of {TOOLSETS}, or * for all."
    )
    writes: bool = Field(
        True, description="Whether write tools are visible to them (still only with a write scope and writes on)."
    )

    @field_validator("toolsets")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TOOLSETS) - {"*"})
        if unknown:
            raise ValueError(f"unknown toolsets {unknown}; choose from {list(TOOLSETS)} or *")
        return value


class ServerSettings(BaseModel):
    """The MCP transport."""

    transport: Literal["stdio", "http"] = Field("stdio", description="stdio, or streamable HTTP at /mcp.")
    host: str = Field("127.0.0.1", description="HTTP bind address; use 0.0.0.0 inside a pod.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    toolsets: list[str] = Field(
        default_factory=lambda: list(TOOLSETS), description=f"Tool groups to expose, of {TOOLSETS}."
    )
    insecure_no_auth: bool = Field(
        False,
        description="Serve HTTP on a non-loopback address without bearer tokens (logged as a warning). Never in "
        "production.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers accepted over HTTP besides localhost/127.0.0.1/[::1] (e.g. the Service name). "
        "Entries may end in :* for any port.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser Origins accepted over HTTP (requests without Origin are fine)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines on stderr: text, or json (one object a line, with principal and tool)."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without a bearer token even when tokens are on (default: read scope)."
    )
    shutdown_grace_seconds: float = Field(
        25.0, ge=0, le=3_600, description="On SIGTERM, how long tool calls in flight may finish before exit."
    )
    stateless_http: bool = Field(
        False,
        description="Keep no MCP session between HTTP requests, so any replica behind a plain load balancer (a "
        "Kubernetes Service) answers any request. Clients cannot be asked to approve a plan (MCP elicitation) "
        "then: plans are approved by policy, a chat button or `cloudpilot approvals`.",
    )
    json_response: bool = Field(
        False,
        description="Answer each MCP request with one JSON body instead of an event stream: a little less work "
        "per call, for proxies that buffer streams, but no progress notifications (nor elicitation) during a call.",
    )
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="/readyz: time for the store and the cluster's /version to answer."
    )
    readiness_cache_seconds: float = Field(
        5.0, ge=0, le=300, description="/readyz: how long a result is reused (probe storms cost one check)."
    )
    oidc_issuer: str | None = Field(
        None,
        pattern=r"^(https://[^\s/?#@]+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?)(/[^\s?#]*)?$",
        description="OIDC issuer whose JWT access tokens are accepted over HTTP (turns bearer auth on); https, "
        "http only on loopback.",
    )
    oidc_audience: str | None = Field(
        None, description="The `aud` an access token must carry; default: this server's MCP URL (its resource)."
    )
    oidc_scope_prefix: str = Field(
        "cloudpilot:", description="Prefix of the token's scopes (`scope`/`scp`) granting read, write, destructive."
    )
    oidc_principal_claim: str = Field("sub", description="Claim naming the caller, e.g. sub, email.")
    oidc_jwks_refresh_seconds: float = Field(
        60.0, gt=0, le=86_400, description="Least time between fetches of the issuer's keys (unknown key ids)."
    )
    oidc_groups_claim: str = Field(
        "groups", description="Claim listing the caller's groups, matched by `group:` patterns of access_rules."
    )
    access_rules: list[AccessRule] = Field(
        default_factory=list,
        max_length=500,
        description="Per-identity policy over HTTP: the first rule that matches a caller decides which toolsets "
        "they see and whether write tools are visible (on top of their token's scopes).",
    )
    access_default: AccessRule = Field(
        default_factory=lambda: AccessRule(match=["*"]),
        description="What callers no rule matches get; e.g. {match: ['*'], toolsets: [], writes: false} to let "
        "only listed callers in.",
    )

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TOOLSETS))
        if unknown:
            raise ValueError(f"unknown toolsets {unknown}; choose from {list(TOOLSETS)}")
        return value


class Settings(BaseSettings):
    """All of CloudPilot's settings."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDPILOT_", env_nested_delimiter="__", extra="forbid", yaml_file=None
    )

    k8s: KubeSettings = Field(default_factory=KubeSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    diagnosis: DiagnosisSettings = Field(default_factory=DiagnosisSettings)
    rca: RcaSettings = Field(default_factory=RcaSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    fix: FixSettings = Field(default_factory=FixSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    feishu: FeishuSettings = Field(default_factory=FeishuSettings)
    bots: BotSettings = Field(default_factory=BotSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logs go to stderr.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        secrets_dir = os.environ.get("CLOUDPILOT_SECRETS_DIR")
        if secrets_dir:  # e.g. a mounted Kubernetes Secret: files named slack__bot_token, llm__api_key, ...
            sources.append(SecretFiles(settings_cls, Path(secrets_dir)))
        return (*sources, YamlConfigSettingsSource(settings_cls))


class SecretFiles(PydanticBaseSettingsSource):
    """Settings from a folder of files, one value each, named like the variables without the prefix:
    `slack__bot_token`, `feishu__app_secret`, `llm__api_key` (a mounted Kubernetes Secret). Trailing newlines are
    dropped; files over 64 KiB, links and names that are not settings are ignored."""

    def __init__(self, settings_cls: type[BaseSettings], folder: Path) -> None:
        super().__init__(settings_cls)
        self.folder = folder

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # values come whole from __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if not self.folder.is_dir():
            return values
        for path in sorted(self.folder.iterdir()):
            group, _, name = path.name.lower().partition("__")
            model = self.settings_cls.model_fields.get(group)
            if path.is_symlink() and not path.resolve().is_file():  # Kubernetes mounts files as links: follow those
                continue
            if not path.is_file() or path.stat().st_size > 65_536 or model is None:
                continue
            fields = getattr(model.annotation, "model_fields", {})
            if name in fields:
                values.setdefault(group, {})[name] = path.read_text().rstrip("\r\n")
        return values


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, an optional YAML file, and explicit overrides (nested dicts)."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=config_file)

    return _FromFile(**overrides) if config_file else Settings(**overrides)
