"""Run logging: metrics.jsonl, TensorBoard, MLflow (optional) and the end-of-run PNG plots."""

from ssl_train.logging.metric_logger import MetricLogger, MetricSink
from ssl_train.logging.metrics_jsonl import METRICS_FILE, JsonlSink, read_metrics
from ssl_train.logging.mlflow_sink import MlflowSink
from ssl_train.logging.plots import embedding_map, plot_curves
from ssl_train.logging.tensorboard_sink import TensorBoardSink, scalar_tag

__all__ = [
    "METRICS_FILE",
    "JsonlSink",
    "MetricLogger",
    "MetricSink",
    "MlflowSink",
    "TensorBoardSink",
    "embedding_map",
    "plot_curves",
    "read_metrics",
    "scalar_tag",
]
