"""MLflow tracking through ``MlflowClient`` (optional: ``pip install 'ssl-train[mlflow]'``).

With no ``tracking_uri`` the run goes to a local file store in ``<run>/mlruns``, which works
offline (``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <run>/mlruns`` shows it;
MLflow 3 keeps that store in maintenance mode behind this opt-in, which ssl-train sets for its
default store). Any other MLflow tracking URI (``sqlite:///...`` with the full ``mlflow``
package, ``http://...``) works too.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssl_train.errors import SslTrainError
from ssl_train.logging.tensorboard_sink import _is_finite_number, scalar_tag


def import_mlflow() -> Any:
    """The ``mlflow`` module.

    Raises:
        SslTrainError: It is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module("mlflow")
    except ImportError as err:
        raise SslTrainError(
            f"logging.mlflow.enabled is true but mlflow cannot be imported ({err}); install it "
            "with pip install 'ssl-train[mlflow]' or set logging.mlflow.enabled=false"
        ) from None


def _flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]  # MLflow caps parameter values
    return out


class MlflowSink:
    """Logs the recipe as parameters and every row's numeric values as metrics.

    Metrics are buffered and sent with ``log_batch`` on :meth:`flush` (the trainer flushes at
    every checkpoint and at the end), so the per-step cost is a list append.

    Args:
        run_dir: The run folder (default store: ``<run_dir>/mlruns``).
        tracking_uri: MLflow tracking URI, or None for the local file store.
        experiment: Experiment name (created when missing).
        run_name: Shown in the MLflow UI.
        params: The resolved recipe, logged as flattened parameters on a new run.
        run_id: An MLflow run to continue (a resumed training run); None starts one.

    Raises:
        SslTrainError: mlflow is not installed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tracking_uri: str | None,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        run_id: str | None = None,
    ) -> None:
        mlflow = import_mlflow()
        self._metric = mlflow.entities.Metric
        if tracking_uri is None:
            # MLflow 3 keeps the file store in "maintenance mode" behind this opt-in; it is the
            # store that needs no database package and no server, so the default opts in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = tracking_uri or (Path(run_dir).resolve() / "mlruns").as_uri()
        self.tracking_uri = uri
        self._client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        if run_id is None:
            exp = self._client.get_experiment_by_name(experiment)
            exp_id = (
                exp.experiment_id if exp is not None else self._client.create_experiment(experiment)
            )
            run = self._client.create_run(exp_id, run_name=run_name)
            run_id = run.info.run_id
            items = sorted(_flat_params(params).items())
            for i in range(0, len(items), 100):  # log_batch takes at most 100 params
                self._client.log_batch(
                    run_id, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]]
                )
        else:
            self._client.update_run(run_id, status="RUNNING")
        self.run_id: str = run_id
        self._pending: list[Any] = []

    def log(self, step: int, row: dict[str, Any]) -> None:
        """Queue the row's finite numeric values as metrics at ``step``."""
        now = int(time.time() * 1000)
        for key, value in row.items():
            if _is_finite_number(value):
                self._pending.append(self._metric(scalar_tag(key), float(value), now, step))

    def flush(self) -> None:
        """Send queued metrics (``log_batch`` takes at most 1000 at a time)."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, folder: str | Path) -> None:
        """Attach every file of ``folder`` (the run's plots) to the MLflow run."""
        self._client.log_artifacts(self.run_id, str(folder))

    def close(self, status: str = "FINISHED") -> None:
        """Flush and mark the run ``FINISHED``, ``KILLED`` (stopped by a signal) or ``FAILED``."""
        self.flush()
        self._client.set_terminated(self.run_id, status=status)
