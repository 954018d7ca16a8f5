"""KpoReaperOperator: one kpo-reaper cycle as an Airflow task.

The class only gathers what Airflow knows (its configuration, the
connection, its version) and hands it to core, which does the work.
"""

from __future__ import annotations

import signal
from typing import Any, Mapping, Sequence

from kpo_reaper_airflow import core

try:  # Airflow 3: the Task SDK
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # Airflow 2
    from airflow.hooks.base import BaseHook
    from airflow.models import BaseOperator

from airflow.exceptions import AirflowException

try:
    from airflow.configuration import conf
except ImportError:  # pragma: no cover - a Task SDK without airflow-core
    from airflow.sdk.configuration import conf  # type: ignore[no-redef]

from airflow import __version__ as AIRFLOW_VERSION


def airflow_major() -> int:
    return int(AIRFLOW_VERSION.split(".")[0])


def _conf(section: str, key: str) -> str:
    try:
        return conf.get(section, key, fallback="") or ""
    except Exception:  # an unknown section on this version
        return ""


def own_airflow_url() -> str:
    """This Airflow's API URL from its configuration: [api] base_url
    (Airflow 3), else the Task Execution API's server without /execution/,
    else [webserver] base_url (Airflow 2)."""
    if airflow_major() >= 3:
        url = _conf("api", "base_url")
        if url:
            return url.rstrip("/")
        exe = _conf("core", "execution_api_server_url").rstrip("/")
        if exe.endswith("/execution"):
            return exe[: -len("/execution")]
    return _conf("webserver", "base_url").rstrip("/")


def own_namespace() -> str:
    """The worker's namespace: the service account mount, else the
    Kubernetes executor's namespace."""
    return core.own_namespace(_conf("kubernetes_executor", "namespace") or _conf("kubernetes", "namespace"))


class KpoReaperOperator(BaseOperator):
    """Runs one `kpo-reaper run --once` and returns its cycle summary
    (pods, reaped, kept, skipped, deleted, calls, would_delete, dry_run).

    The task is no KubernetesPodOperator pod, so it is never a candidate
    itself; run by KubernetesPodOperator instead, its pod belongs to a
    running task instance and is kept like any live pod.

    :param airflow_conn_id: the connection whose fields become
        airflow.auth (login+password: basic on Airflow 2, airflow-jwt on
        Airflow 3; password alone: an Astronomer API token; type
        google_cloud_platform: Google ADC; type aws: MWAA, extra
        mwaa_environment; extra auth_type overrides). None: no auth.
    :param airflow_url: default this Airflow's own URL from its
        configuration (or the connection's host).
    :param namespaces: where the KPO pods run; default the worker's own.
    :param kubeconfig: a kubeconfig path; None: in-cluster.
    :param dry_run: default True: report, delete nothing.
    :param config: any other reaper key, nested or dotted.
    :param binary: another kpo-reaper binary than the wheel's.
    """

    template_fields: Sequence[str] = ("airflow_url", "namespaces", "kubeconfig", "config")
    ui_color = "#e8d7f1"

    def __init__(
        self,
        *,
        airflow_conn_id: str | None = None,
        airflow_url: str | None = None,
        namespaces: Sequence[str] | None = None,
        kubeconfig: str | None = None,
        dry_run: bool = True,
        config: Mapping[str, Any] | None = None,
        binary: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.airflow_conn_id = airflow_conn_id
        self.airflow_url = airflow_url
        self.namespaces = list(namespaces) if namespaces else None
        self.kubeconfig = kubeconfig
        self.dry_run = dry_run
        self.config = dict(config or {})
        self.binary = binary
        self._proc = None

    def _auth(self) -> core.Auth:
        if not self.airflow_conn_id:
            return core.Auth()
        c = BaseHook.get_connection(self.airflow_conn_id)
        return core.auth_from_connection(c.conn_type, c.login, c.password, c.host, c.extra_dejson,
                                         airflow_major())

    def execute(self, context: Any) -> dict:
        try:
            auth = self._auth()
            ns = self.namespaces or ([own_namespace()] if own_namespace() else [])
            cfg = core.build_config(self.airflow_url or own_airflow_url(), auth, ns, self.kubeconfig,
                                    self.dry_run, self.config)
        except core.ConfigError as e:
            raise AirflowException(f"kpo-reaper configuration: {e}") from e
        try:
            return core.run_once(cfg, auth.secret_env, self.binary, log=self.log, on_start=self._started)
        except core.ReaperFailed as e:
            raise AirflowException(str(e)) from e
        finally:
            self._proc = None

    def _started(self, proc: Any) -> None:
        self._proc = proc

    def on_kill(self) -> None:
        # SIGTERM: the reaper stops between deletions and exits.
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
