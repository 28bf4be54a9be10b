"""Prometheus metrics of the operator (controller-runtime's names under a `vlmops_` prefix).

Every metric name the operator or the jobs export is listed in `ALL_METRIC_NAMES`; the chart's
dashboard and alerts are checked against it.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter("vlmops_reconcile_total", "Reconciles by kind and result", ["controller", "result"])
RECONCILE_ERRORS = Counter("vlmops_reconcile_errors_total", "Reconcile errors by kind", ["controller"])
RECONCILE_TIME = Histogram("vlmops_reconcile_time_seconds", "Reconcile duration by kind", ["controller"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
API_WRITES = Counter("vlmops_api_writes_total", "Writes to the Kubernetes API", ["verb", "resource"])
RESOURCES = Gauge("vlmops_resources", "Custom resources by kind and phase", ["kind", "phase"])
CHILD_FAILURES = Counter("vlmops_child_failures_total", "Child Jobs/PyTorchJobs that failed", ["kind"])

# Mirrored from status so dashboards need no storage access.
PACKING_EFFICIENCY = Gauge("vlmops_packing_efficiency", "tokens / (sequences * length)", ["namespace", "name"])
PACKING_COMPRESSION = Gauge("vlmops_packing_compression_ratio", "samples / sequences", ["namespace", "name"])
PACKING_LOWER_BOUND = Gauge("vlmops_packing_lower_bound_sequences", "Best lower bound on the sequence count",
                            ["namespace", "name"])
PACKING_GAP = Gauge("vlmops_packing_gap_to_lower_bound", "sequences / lower bound - 1", ["namespace", "name"])
BALANCE_SELECTED = Gauge("vlmops_balance_selected_samples", "Samples kept by balancing", ["namespace", "name"])
BALANCE_ENTROPY = Gauge("vlmops_balance_entropy_bits", "Concept entropy", ["namespace", "name", "when"])
BALANCE_GINI = Gauge("vlmops_balance_gini", "Concept Gini coefficient", ["namespace", "name", "when"])
TRAIN_STEP = Gauge("vlmops_stage_step", "Training step (from status)", ["namespace", "name"])
TRAIN_TOKENS = Gauge("vlmops_stage_tokens_per_second", "Training tokens/s (from status)", ["namespace", "name"])
TRAIN_MFU = Gauge("vlmops_stage_mfu", "Training MFU (from status)", ["namespace", "name"])
EVAL_SCORE = Gauge("vlmops_eval_score", "lmms-eval metric value", ["namespace", "suite", "task", "metric"])
EVAL_PASSED = Gauge("vlmops_eval_passed", "Thresholds passed", ["namespace", "suite"])
RL_STEP = Gauge("vlmops_rl_step", "GRPO step across phases (from status)", ["namespace", "name"])
RL_REWARD = Gauge("vlmops_rl_reward_mean", "GRPO mean reward of the last step (from status)", ["namespace", "name"])
RL_KL = Gauge("vlmops_rl_kl", "GRPO KL to the phase's starting policy (from status)", ["namespace", "name"])
RL_TOKENS = Gauge("vlmops_rl_tokens_per_second", "GRPO tokens/s (from status)", ["namespace", "name"])
RL_SELECTED = Gauge("vlmops_rl_selected_prompts", "Prompts kept by the selection rule", ["namespace", "name"])

# Series that belong to one CR (labels namespace + name/suite), with their label names: removed with it.
PER_CR = [(PACKING_EFFICIENCY, ("namespace", "name")), (PACKING_COMPRESSION, ("namespace", "name")),
          (PACKING_LOWER_BOUND, ("namespace", "name")), (PACKING_GAP, ("namespace", "name")),
          (BALANCE_SELECTED, ("namespace", "name")), (BALANCE_ENTROPY, ("namespace", "name", "when")),
          (BALANCE_GINI, ("namespace", "name", "when")), (TRAIN_STEP, ("namespace", "name")),
          (TRAIN_TOKENS, ("namespace", "name")), (TRAIN_MFU, ("namespace", "name")),
          (EVAL_SCORE, ("namespace", "suite", "task", "metric")), (EVAL_PASSED, ("namespace", "suite")),
          (RL_STEP, ("namespace", "name")), (RL_REWARD, ("namespace", "name")), (RL_KL, ("namespace", "name")),
          (RL_TOKENS, ("namespace", "name")), (RL_SELECTED, ("namespace", "name"))]


def remove_series(namespace: str, name: str, gauges: tuple) -> None:
    """Drop the series of the CR `namespace/name` from `gauges` (one kind's: names are unique per kind)."""
    for gauge, labels in PER_CR:
        if gauge not in gauges:
            continue
        for metric in gauge.collect():
            for sample in metric.samples:
                if sample.labels.get("namespace") == namespace and name in (sample.labels.get("name"),
                                                                            sample.labels.get("suite")):
                    try:
                        gauge.remove(*(sample.labels[label] for label in labels))
                    except KeyError:
                        pass  # already removed (one series yields several samples on some types)


# Exported by the training pods themselves (PodMonitor), see jobs/vlmops_jobs/train.
JOB_METRICS = [
    "vlmops_train_step", "vlmops_train_total_steps", "vlmops_train_loss", "vlmops_train_tokens_per_second",
    "vlmops_train_samples_per_second", "vlmops_train_mfu",
]
OPERATOR_METRICS = [
    "vlmops_reconcile_total", "vlmops_reconcile_errors_total", "vlmops_reconcile_time_seconds",
    "vlmops_api_writes_total", "vlmops_resources", "vlmops_child_failures_total", "vlmops_packing_efficiency",
    "vlmops_packing_compression_ratio", "vlmops_packing_lower_bound_sequences", "vlmops_packing_gap_to_lower_bound",
    "vlmops_balance_selected_samples", "vlmops_balance_entropy_bits",
    "vlmops_balance_gini", "vlmops_stage_step", "vlmops_stage_tokens_per_second", "vlmops_stage_mfu",
    "vlmops_eval_score", "vlmops_eval_passed", "vlmops_rl_step", "vlmops_rl_reward_mean", "vlmops_rl_kl",
    "vlmops_rl_tokens_per_second", "vlmops_rl_selected_prompts",
]
ALL_METRIC_NAMES = OPERATOR_METRICS + JOB_METRICS
