"""Copy into your DAG folder (with kpo-reaper-airflow installed).

Dry run first: read the task's log (every pod that would be deleted is
named) and its return value, then set dry_run=False.
"""

from kpo_reaper_airflow import kpo_reaper_dag

dag = kpo_reaper_dag(
    dag_id="kpo_reaper",
    # The connection of a user that may read DAGs, DAG runs, task instances
    # and XComs (Viewer). Composer: a google_cloud_platform connection (or
    # none: extra auth_type google). MWAA: an aws connection, extra
    # {"mwaa_environment": "..."}.
    airflow_conn_id="kpo_reaper_airflow",
    # Where your KubernetesPodOperator pods run; default the worker's own.
    # namespaces=["composer-user-workloads"],
    dry_run=True,
    # Any other reaper key (config/kpo-reaper.yaml), e.g.
    # config={"kubernetes": {"labelSelector": "airflow-instance=prod"}},
)
