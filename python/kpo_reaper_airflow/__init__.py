"""kpo-reaper as an Airflow task: KpoReaperOperator and kpo_reaper_dag.

The package ships the static kpo-reaper binary (kpo_reaper_airflow/bin/).
Importing it does not import Airflow; the two names below do, on first use.
"""

__all__ = ["KpoReaperOperator", "kpo_reaper_dag", "binary_path"]

from kpo_reaper_airflow.core import binary_path


def __getattr__(name):
    if name == "KpoReaperOperator":
        from kpo_reaper_airflow.operator import KpoReaperOperator

        return KpoReaperOperator
    if name == "kpo_reaper_dag":
        from kpo_reaper_airflow.dag import kpo_reaper_dag

        return kpo_reaper_dag
    raise AttributeError(name)
