"""The operator's logic without Airflow: the reaper's configuration from the
task's arguments, the auth from a connection's fields, one `kpo-reaper run
--once` as a subprocess whose log lines go to a logger, its exit code mapped
to success or failure, and the cycle's summary.

Nothing here imports Airflow, so it is tested (and usable) without it; the
Airflow-facing class in operator.py only gathers the inputs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

# The reaper's exit codes (internal/cli).
EXIT_OK = 0
EXIT_CYCLE_FAILED = 1  # not evaluated safely; nothing was deleted
EXIT_USAGE = 2  # bad configuration
EXIT_FAILED_AFTER_DELETES = 3  # deleted pods, then failed closed

# Every configuration key can also come from the environment under this
# prefix; inherited ones are dropped so that the task's arguments are what
# runs (secrets are passed this way on purpose, see auth_from_connection).
ENV_PREFIX = "KPO_REAPER_"

# The service account mount: the worker's own namespace when it runs in a pod.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

AUTH_TYPES = ("none", "basic", "bearer", "airflow-jwt", "google", "mwaa")


class ConfigError(ValueError):
    """A task argument or connection that cannot make a configuration."""


class ReaperFailed(RuntimeError):
    """The reaper exited non-zero: the task fails with the reaper's error."""

    def __init__(self, exit_code: int, error: str):
        self.exit_code = exit_code
        self.error = error
        meaning = {
            EXIT_CYCLE_FAILED: "the cycle could not be evaluated safely; nothing was deleted",
            EXIT_USAGE: "the configuration was refused",
            EXIT_FAILED_AFTER_DELETES: "the cycle deleted pods, then failed closed",
        }.get(exit_code, "the reaper did not finish")
        super().__init__(f"kpo-reaper exited {exit_code} ({meaning}): {error or 'no error line'}")


def binary_path() -> Path:
    """The kpo-reaper binary this wheel ships."""
    return Path(__file__).resolve().parent / "bin" / "kpo-reaper"


@dataclass
class Auth:
    """airflow.auth (and airflow.mwaa) keys for the file, and the secrets,
    which go to the subprocess's environment only (never into the file,
    the task log or the rendered template fields)."""

    config: dict = field(default_factory=lambda: {"type": "none"})
    mwaa: dict = field(default_factory=dict)
    secret_env: dict = field(default_factory=dict)
    url: str = ""  # the connection's host, when it names the Airflow


def auth_from_connection(
    conn_type: str | None,
    login: str | None,
    password: str | None,
    host: str | None,
    extra: Mapping[str, Any] | None,
    airflow_major: int,
) -> Auth:
    """Maps an Airflow connection onto the reaper's airflow.auth keys.

    - login and password: basic on Airflow 2 (FAB basic_auth), airflow-jwt on
      Airflow 3 (POST /auth/token);
    - a password alone: bearer (an Astronomer API token);
    - conn_type google_cloud_platform: google (Application Default
      Credentials, or the connection's key_path);
    - conn_type aws: mwaa, the environment name in extra "mwaa_environment"
      (login/password, when set, are the AWS access key);
    - extra "auth_type" chooses any of AUTH_TYPES explicitly.
    """
    extra = dict(extra or {})
    kind = (extra.pop("auth_type", "") or "").strip()
    ctype = (conn_type or "").strip()
    if not kind:
        if ctype in ("google_cloud_platform", "gcp", "google"):
            kind = "google"
        elif ctype in ("aws", "aws_default"):
            kind = "mwaa"
        elif login and password:
            kind = "basic" if airflow_major < 3 else "airflow-jwt"
        elif password:
            kind = "bearer"
        else:
            kind = "none"
    if kind not in AUTH_TYPES:
        raise ConfigError(f"connection extra auth_type {kind!r}: use one of {', '.join(AUTH_TYPES)}")
    a = Auth(config={"type": kind})
    if host and kind != "mwaa":
        a.url = _connection_url(ctype, host, extra)
    if kind in ("basic", "airflow-jwt"):
        if extra.get("client_id"):
            a.config["clientID"] = extra["client_id"]
            a.secret_env[ENV_PREFIX + "AIRFLOW_AUTH_CLIENTSECRET"] = password or ""
        else:
            if not login or not password:
                raise ConfigError(f"auth {kind} needs the connection's login and password")
            a.config["username"] = login
            a.secret_env[ENV_PREFIX + "AIRFLOW_AUTH_PASSWORD"] = password
    elif kind == "bearer":
        if extra.get("token_file"):
            a.config["tokenFile"] = extra["token_file"]
        elif password:
            a.secret_env[ENV_PREFIX + "AIRFLOW_AUTH_TOKEN"] = password
        else:
            raise ConfigError("auth bearer needs the token as the connection's password (or extra token_file)")
    elif kind == "google":
        key = extra.get("key_path") or extra.get("extra__google_cloud_platform__key_path")
        if key:
            a.config["credentialsFile"] = key
        scope = extra.get("scope") or extra.get("extra__google_cloud_platform__scope")
        if scope:
            a.config["scopes"] = [s.strip() for s in str(scope).split(",") if s.strip()]
    elif kind == "mwaa":
        env = extra.get("mwaa_environment") or extra.get("environment")
        if not env:
            raise ConfigError("auth mwaa needs the environment's name in the connection extra mwaa_environment")
        a.mwaa = {"environment": env}
        if extra.get("region_name"):
            a.mwaa["region"] = extra["region_name"]
        if extra.get("endpoint_url"):
            a.mwaa["endpoint"] = extra["endpoint_url"]
        if login and password:
            a.secret_env["AWS_ACCESS_KEY_ID"] = login
            a.secret_env["AWS_SECRET_ACCESS_KEY"] = password
            if extra.get("aws_session_token"):
                a.secret_env["AWS_SESSION_TOKEN"] = extra["aws_session_token"]
    return a


def _connection_url(conn_type: str, host: str, extra: Mapping[str, Any]) -> str:
    if "://" in host:
        return host.rstrip("/")
    scheme = extra.get("schema") or ("https" if conn_type == "https" else "http")
    return f"{scheme}://{host}".rstrip("/")


def own_namespace(conf_namespace: str | None = None, mount: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The worker's own namespace: the service account mount, else the
    Kubernetes executor's configured namespace."""
    try:
        ns = mount.read_text().strip()
        if ns:
            return ns
    except OSError:
        pass
    return (conf_namespace or "").strip()


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[parts[-1]] = value


def _merge(tree: dict, extra: Mapping[str, Any], prefix: str = "") -> None:
    for k, v in extra.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _merge(tree, v, key + ".")
        else:
            _set(tree, key, v)


# Keys the operator owns: the log format it parses, no server port on a
# worker, and no leader election (one task run is one cycle).
FIXED = {"log.format": "json", "server.address": "", "leaderElection.enabled": False}


def build_config(
    airflow_url: str,
    auth: Auth,
    namespaces: Iterable[str] | None,
    kubeconfig: str | None,
    dry_run: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """The reaper's configuration for one `run --once`. extra holds any
    other reaper key, nested ({"reaper": {"confirmations": 3}}) or dotted
    ({"reaper.confirmations": 3}); it cannot hold secrets, which belong in
    the connection."""
    url = auth.url or (airflow_url or "").rstrip("/")
    if not url and auth.config.get("type") != "mwaa":
        raise ConfigError("airflow_url: none given and none found in this Airflow's configuration "
                          "([api] base_url on Airflow 3, [webserver] base_url on Airflow 2); pass airflow_url")
    ns = [n for n in (namespaces or []) if n]
    if not ns and not (extra and _lookup(extra, "kubernetes.allNamespaces")):
        raise ConfigError("namespaces: the worker's namespace was not found (no service account mount, no "
                          "[kubernetes_executor] namespace); pass namespaces=[...] where the KPO pods run")
    c: dict = {"airflow": {"auth": dict(auth.config)}, "kubernetes": {}, "reaper": {}}
    if url and auth.config.get("type") != "mwaa":
        c["airflow"]["url"] = url
    if auth.mwaa:
        c["airflow"]["mwaa"] = dict(auth.mwaa)
    if ns:
        c["kubernetes"]["namespaces"] = ns
    c["kubernetes"]["kubeconfig"] = kubeconfig or ""
    c["reaper"]["dryRun"] = bool(dry_run)
    if extra:
        for secret in ("airflow.auth.password", "airflow.auth.token", "airflow.auth.clientSecret"):
            if _lookup(extra, secret) is not None:
                raise ConfigError(f"config {secret}: secrets belong in the Airflow connection, not in the "
                                  "task's arguments (which Airflow renders and stores)")
        _merge(c, extra)
    for k, v in FIXED.items():
        _set(c, k, v)
    return c


def _lookup(extra: Mapping[str, Any], dotted: str) -> Any:
    if dotted in extra:
        return extra[dotted]
    node: Any = extra
    for p in dotted.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


SUMMARY_KEYS = {"pods": "pods", "reap": "reaped", "keep": "kept", "skip": "skipped",
                "deleted": "deleted", "apiCalls": "calls"}


def summary_of(record: Mapping[str, Any]) -> dict | None:
    """The task's return value from the reaper's JSON `cycle` line (or its
    `cycle failed` line); None for any other line."""
    if record.get("msg") not in ("cycle", "cycle failed"):
        return None
    s = {out: int(record.get(key, 0)) for key, out in SUMMARY_KEYS.items()}
    s["would_delete"] = int(record.get("wouldDelete", 0))
    s["dry_run"] = "wouldDelete" in record
    s["duration"] = record.get("duration", "")
    return s


def render(record: Mapping[str, Any]) -> tuple[int, str]:
    """A JSON log record as a task log line: "msg key=value ...", at its
    level."""
    level = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
             "ERROR": logging.ERROR}.get(str(record.get("level", "INFO")), logging.INFO)
    parts = [str(record.get("msg", ""))]
    for k, v in record.items():
        if k in ("time", "level", "msg"):
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"), sort_keys=True)
        s = str(v)
        parts.append(f"{k}={json.dumps(s) if (not s or ' ' in s or '=' in s) else s}")
    return level, " ".join(parts)


def _emit(log: Any, level: int, text: str) -> None:
    # By method and without arguments: Airflow 3's task logger is structlog,
    # Airflow 2's is logging; both take a plain message this way.
    name = {logging.DEBUG: "debug", logging.WARNING: "warning", logging.ERROR: "error"}.get(level, "info")
    getattr(log, name)(text)


def run_once(
    config: Mapping[str, Any],
    secret_env: Mapping[str, str] | None = None,
    binary: str | os.PathLike | None = None,
    log: Any = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> dict:
    """Runs one `kpo-reaper run --once` with this configuration, sends its
    log lines to log, and returns the cycle's summary. Exit 1, 2 or 3 (or
    none) raises ReaperFailed with the reaper's error."""
    log = log or logging.getLogger("kpo_reaper_airflow")
    binary = os.fspath(binary or binary_path())
    base = dict(os.environ if env is None else env)
    child_env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
    child_env.update(secret_env or {})
    summary = None
    error = ""
    in_error = False
    with tempfile.TemporaryDirectory(prefix="kpo-reaper-") as d:
        path = Path(d) / "kpo-reaper.yaml"
        # JSON is YAML; the file holds no secret, and only its owner reads it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        proc = subprocess.Popen([binary, "run", "--once", "--config", str(path)], env=child_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
        if on_start:
            on_start(proc)
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    # The last words of a failed run: "error: <cause>", with
                    # one line per cause after it (e.g. each missing
                    # permission).
                    if line.startswith("error: "):
                        error = line[len("error: "):]
                        in_error = True
                    elif in_error:
                        error += "; " + line.strip()
                    _emit(log, logging.ERROR if in_error else logging.INFO, line)
                    continue
                _emit(log, *render(record))
                if record.get("msg") == "exiting" and record.get("error"):
                    # The last words of a failed run in JSON mode: the
                    # whole error, one line per cause.
                    error = "; ".join(p.strip() for p in str(record["error"]).splitlines() if p.strip())
                s = summary_of(record)
                if s is not None:
                    summary = s
                    if record.get("error"):
                        error = error or str(record["error"])
        code = proc.wait()
    if code != EXIT_OK:
        raise ReaperFailed(code, error)
    if summary is None:
        raise ReaperFailed(code, "the reaper exited 0 without its cycle summary line")
    return summary
