"""Rank 0's progress: `<output>/progress.json` and Prometheus gauges on --metrics-port."""
from __future__ import annotations

import time
from typing import Any

from vlmops_contract.layouts.train import PROGRESS

from ..common import storage

GAUGES = {
    "step": ("vlmops_train_step", "Optimizer steps completed"),
    "totalSteps": ("vlmops_train_total_steps", "Optimizer steps planned (trainIters)"),
    "loss": ("vlmops_train_loss", "Mean loss over answer tokens of the last step"),
    "tokensPerSecond": ("vlmops_train_tokens_per_second", "Sequence tokens (text + image) per second, whole job"),
    "samplesPerSecond": ("vlmops_train_samples_per_second", "Samples (before packing) per second, whole job"),
    "mfu": ("vlmops_train_mfu", "Model FLOPs utilization against --peak-tflops x world size"),
}


class Progress:
    def __init__(self, output: str | None, total_steps: int, metrics_port: int, every: int):
        self.output = output
        self.every = max(1, every)
        self.state: dict[str, Any] = {"step": 0, "totalSteps": total_steps, "loss": None, "tokensPerSecond": 0.0,
                                      "samplesPerSecond": 0.0, "mfu": 0.0}
        self.checkpoint: dict[str, Any] | None = None
        self.gauges = {}
        if metrics_port and metrics_port > 0:
            from prometheus_client import CollectorRegistry, Gauge, start_http_server

            self.registry = CollectorRegistry()
            for k, (name, doc) in GAUGES.items():
                self.gauges[k] = Gauge(name, doc, registry=self.registry)
            start_http_server(metrics_port, registry=self.registry)
        self._set_gauges()
        self.window: list[tuple[float, int, int, float]] = []

    def _set_gauges(self):
        for k, g in self.gauges.items():
            v = self.state.get(k)
            if v is not None:
                g.set(float(v))

    def update(self, step: int, loss: float, tokens: int, samples: int, flops: float, dt: float,
               world: int, peak_tflops: float) -> None:
        self.window.append((dt, tokens, samples, flops))
        self.window = self.window[-20:]
        t = sum(w[0] for w in self.window) or 1e-9
        self.state.update(
            step=step, loss=round(float(loss), 6),
            tokensPerSecond=round(sum(w[1] for w in self.window) / t, 2),
            samplesPerSecond=round(sum(w[2] for w in self.window) / t, 3),
            mfu=round(sum(w[3] for w in self.window) / t / (peak_tflops * 1e12 * world), 6) if peak_tflops else 0.0,
        )
        self._set_gauges()
        if step % self.every == 0 or step == self.state["totalSteps"]:
            self.write()

    def write(self) -> None:
        if not self.output:
            return
        doc = dict(self.state)
        if self.checkpoint:
            doc["checkpoint"] = self.checkpoint
        doc["updatedAt"] = round(time.time(), 3)
        storage.write_json_atomic(storage.join(self.output, PROGRESS), doc)
