"""kpo_reaper_dag: a ready DAG that runs one reaper cycle every 10 minutes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kpo_reaper_airflow.operator import KpoReaperOperator

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

# Every 10 minutes. Confirmations are counted in the pod's annotations, so a
# zombie seen by two runs at least reaper.confirmationSpacing apart (default
# reaper.interval, 1m) is deleted on the second: about 10-20 minutes after
# its task instance ended. Runs closer together than the spacing (a manual
# trigger, a retry) count once.
SCHEDULE = "*/10 * * * *"


def kpo_reaper_dag(
    dag_id: str = "kpo_reaper",
    schedule: Any = SCHEDULE,
    start_date: dt.datetime | None = None,
    dry_run: bool = True,
    tags: list[str] | None = None,
    **operator_kwargs: Any,
) -> DAG:
    """A DAG with one KpoReaperOperator task: max_active_runs=1 (a cycle
    never overlaps another), no catchup (a missed cycle is not worth
    running late), no retries (the next run is the retry), and a dry run
    until told otherwise (dry_run=False).

    operator_kwargs go to KpoReaperOperator (airflow_conn_id, namespaces,
    kubeconfig, config, ...).
    """
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date or dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        tags=tags if tags is not None else ["kpo-reaper"],
        doc_md=__doc__,
    ) as dag:
        operator_kwargs.setdefault("retries", 0)
        operator_kwargs.setdefault("execution_timeout", dt.timedelta(minutes=9))
        KpoReaperOperator(task_id="reap", dry_run=dry_run, **operator_kwargs)
    return dag
