"""Experiment trackers a run also writes its metrics to (``train.report_to: [tensorboard, mlflow]``).

``metrics.jsonl`` in the run folder is always written (train/runs.py ``Run.log``); each row's numbers go to
every tracker too, under the same names and at the same step:

- **tensorboard**: an event file under ``<run>/tensorboard/`` (``torch.utils.tensorboard.SummaryWriter``,
  flushed every row, so a crash loses nothing logged); ``tensorboard --logdir runs`` shows every run.
- **mlflow**: one MLflow run per tunesmith run (named after it, tagged with its folder, method, finetune and
  base model), through ``MlflowClient`` rather than MLflow's global "active run" (the server's job worker
  trains several runs in one process). The store is MLflow's own setting, ``MLFLOW_TRACKING_URI`` (a
  tracking server ``http://...``, or ``sqlite:///...`` with the full ``mlflow`` package); when it is not set,
  a file store in ``<train.output_dir>/mlruns`` (MLflow 3 keeps its file store in maintenance mode behind
  ``MLFLOW_ALLOW_FILE_STORE``, which tunesmith sets for that store only when you did not set it;
  ``mlflow-skinny`` has no SQL store). The experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``tunesmith``. The
  MLflow run id is kept in ``<run>/mlflow.json``, so ``--resume`` continues the same MLflow run.

Both come with the optional extra ``trackers`` (``pip install 'tunesmith[trackers]'``: ``tensorboard`` and
``mlflow-skinny``, MLflow's official client-only distribution); ``make install`` includes it. A tracker
asked for but not installed is refused before anything is written, naming the extra.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

EXTRA = "trackers"
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # report_to name -> module to import
_STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "stopped": "KILLED", "interrupted": "KILLED"}


def check_trackers(report_to: list[str]) -> None:
    """Refuse (before anything is written) a tracker whose package is not installed.

    Raises:
        TunesmithError: naming the tracker and the extra that installs it.
    """
    import importlib.util

    for name in report_to:
        try:
            found = importlib.util.find_spec(_PACKAGES[name]) is not None
        except ValueError:  # a module set to None in sys.modules: as good as missing
            found = False
        if not found:
            raise _missing(name)


def open_trackers(cfg: Any, run_dir: Path) -> list[Any]:
    """The trackers ``cfg.train.report_to`` asks for, opened for the run in ``run_dir`` (rank 0 only).

    Raises:
        TunesmithError: when a tracker's package is missing or its store cannot be opened.
    """
    check_trackers(cfg.train.report_to)
    out: list[Any] = []
    for name in cfg.train.report_to:
        out.append(TensorBoardTracker(run_dir) if name == "tensorboard" else MlflowTracker(cfg, run_dir))
    return out


class TensorBoardTracker:
    """Scalars to ``<run>/tensorboard/``; a resumed run appends a new event file to the same folder."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, numbers: dict[str, float], step: int) -> None:
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker:
    """Metrics to one MLflow run (see the module docstring for the store and the experiment)."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        uri = os.environ.get("MLFLOW_TRACKING_URI") or _local_store(Path(cfg.train.output_dir))
        self.client = MlflowClient(tracking_uri=uri)
        self.record = run_dir / "mlflow.json"
        try:
            self.run_id = self._resumed_run(uri) or self._new_run(cfg, run_dir, uri)
        except Exception as exc:  # noqa: BLE001 - any store error (unreachable server, bad URI) is one message
            raise TunesmithError(
                f"train.report_to lists mlflow, but its tracking store {uri} cannot be used: {exc}",
                "Set MLFLOW_TRACKING_URI to a reachable tracking server (http://host:5000), unset it for a "
                "file store in the runs folder, or remove mlflow from train.report_to.",
            ) from None

    def log(self, numbers: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numbers.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, _STATUS.get(status, "FAILED"))

    def _new_run(self, cfg: Any, run_dir: Path, uri: str) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "tunesmith"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {
            "tunesmith.run_dir": str(run_dir.resolve()),
            "tunesmith.method": cfg.train.method,
            "tunesmith.finetune": cfg.train.finetune,
            "tunesmith.base_model": str(cfg.model.name),
        }
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags)
        self.record.write_text(json.dumps({"tracking_uri": uri, "run_id": run.info.run_id}))
        return run.info.run_id

    def _resumed_run(self, uri: str) -> str | None:
        try:
            saved = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("tracking_uri") != uri or not saved.get("run_id"):
            return None  # another store than the one the run started with: a new MLflow run there
        self.client.update_run(saved["run_id"], status="RUNNING")
        return str(saved["run_id"])


def _local_store(output_dir: Path) -> str:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (output_dir.resolve() / "mlruns").as_uri()


def _missing(name: str) -> TunesmithError:
    return TunesmithError(
        f"train.report_to lists {name}, but the {name} package is not installed.",
        f"Install the trackers extra: pip install 'tunesmith[{EXTRA}]' (tensorboard and mlflow-skinny), or "
        f"remove {name} from train.report_to (metrics.jsonl is always written).",
    )
