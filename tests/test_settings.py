"""Settings: environment variables with a prefix, a YAML file, and the command line, in that precedence."""

import pytest

from connections.kube import Clusters
from errors import NotFound
from server import parse_args, settings_from_args
from settings import load_settings


def test_env_yaml_and_flags_layer_in_order(tmp_path, monkeypatch):
    config = tmp_path / "cloudpilot.yaml"
    config.write_text(
        "k8s: {context: from-yaml, cache_ttl_seconds: 5}\nsafety: {namespace_deny: [kube-*]}\nserver: {port: 9000}\n"
    )
    monkeypatch.setenv("CLOUDPILOT_K8S__CONTEXT", "from-env")
    monkeypatch.setenv("CLOUDPILOT_OUTPUT__DEFAULT_LIMIT", "7")
    s = settings_from_args(parse_args(["--config", str(config), "--allow-write", "--port", "9100"]))
    assert s.k8s.context == "from-env"  # env beats the file
    assert s.k8s.cache_ttl_seconds == 5 and s.safety.namespace_deny == ["kube-*"]  # the file beats defaults
    assert s.server.port == 9100 and s.safety.allow_write  # flags beat everything
    assert s.output.default_limit == 7 and not s.safety.allow_destructive


def test_defaults_are_safe(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("CLOUDPILOT_")]:
        monkeypatch.delenv(key)
    s = load_settings()
    assert not s.safety.allow_write and not s.safety.allow_destructive
    assert s.server.transport == "stdio" and s.server.host == "127.0.0.1"
    assert "kube-system" in s.safety.protected_namespaces and s.rca.threshold == 0.65


def test_bad_settings_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="unknown toolsets"):
        settings_from_args(parse_args(["--toolsets", "core,nope"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_in_cluster_outside_a_pod_says_what_to_use(tmp_path):
    s = load_settings(k8s={"in_cluster": "always"}, store={"path": tmp_path / "db"})
    from store import Store

    clusters = Clusters(s.k8s, Store(s.store.path))
    with pytest.raises(NotFound, match=r"Not running in a pod.*kubeconfig context or a registered cluster"):
        clusters.get()


def test_secrets_come_from_a_folder_of_files(tmp_path, monkeypatch):
    """A mounted Kubernetes Secret: one file per value, named like the variable without its prefix."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "slack__bot_token").write_text("xoxb-from-file\n")
    (folder / "feishu__app_secret").write_text("feishu-from-file")
    (folder / "nonsense__field").write_text("ignored")  # not a setting: skipped
    (folder / "llm__api_key").symlink_to(folder / "feishu__app_secret")  # how Kubernetes mounts them
    monkeypatch.setenv("CLOUDPILOT_SECRETS_DIR", str(folder))
    monkeypatch.setenv("CLOUDPILOT_FEISHU__APP_SECRET", "feishu-from-env")  # the environment wins
    loaded = load_settings()
    assert loaded.slack.bot_token is not None and loaded.slack.bot_token.get_secret_value() == "xoxb-from-file"
    assert loaded.feishu.app_secret is not None and loaded.feishu.app_secret.get_secret_value() == "feishu-from-env"
    assert loaded.llm.api_key is not None and loaded.llm.api_key.get_secret_value() == "feishu-from-file"
    assert "xoxb-from-file" not in repr(loaded) and "xoxb-from-file" not in loaded.model_dump_json()
