"""Operator scale on the project's API-server emulator: N EvalSuites (one Job each), the real operator
process. Reports, for each N: API requests per CR until all are started, time to all-started, the
operator's peak RSS, writes during a steady state once all are finished (must be 0), and the restart
time with N finished CRs (stop to every CR reconciled by the new process); and the restart-time ratio between the largest and smallest N (linear
growth gives about N_max/N_min; quadratic growth would be its square).

    make vlmops ... or: PYTHONPATH=operator:jobs python benchmarks/operator/operator_scale.py --sizes 100 1000
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "operator"))  # the emulator and harness the tests use

from emulated_apiserver import EmulatorServer, kubeconfig  # noqa: E402
from operator_harness import TEST_UA, OperatorProcess, crd_docs, wait_for  # noqa: E402
from pipeline_driver import Cluster  # noqa: E402


def _eval_suite(ns: str, i: int) -> dict:
    return {"apiVersion": "vlmops.dev/v1alpha1", "kind": "EvalSuite", "metadata": {"name": f"e{i:05d}", "namespace": ns},
            "spec": {"model": {"checkpoint": "s3://models/ckpt"}, "lmmsEval": {"tasks": ["mmmu_val"]},
                     "output": {"uri": f"s3://evals/e{i:05d}"}}}


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _operator_records(srv: EmulatorServer, since: float) -> list:
    return [r for r in srv.records() if r.at >= since and not r.user_agent.startswith(TEST_UA)]


class _Reconciled:
    """The CRs the operator read one by one since `since` (each reconcile starts with a GET of its CR),
    scanning only the requests recorded after the previous poll: a full scan of ~10^5 records every
    poll holds the GIL long enough to starve the emulator's own thread (the operator's requests then
    time out, which measures the benchmark, not the operator)."""

    def __init__(self, srv: EmulatorServer, since: float):
        self.records, self.since, self.cursor, self.names = srv.emulator.records, since, 0, set()

    def __call__(self) -> set[str]:
        new = self.records[self.cursor:]
        self.cursor += len(new)
        self.names.update(r.path.rsplit("/", 1)[-1] for r in new
                          if r.at >= self.since and not r.user_agent.startswith(TEST_UA) and r.method == "GET"
                          and "/evalsuites/" in r.path and "watch=" not in r.query)
        return self.names


def _quiet_since(srv: EmulatorServer, quiet: float) -> bool:
    """No operator request (watches aside) in the last `quiet` seconds."""
    recent = [r for r in _operator_records(srv, time.time() - quiet) if "watch=" not in r.query]
    return not recent


def run(n: int, steady_seconds: float, timeout: float) -> dict:
    ns = "scale"
    srv = EmulatorServer(crd_docs(), namespaces=["default", ns]).start()
    work = Path(tempfile.mkdtemp(prefix="vlmops-scale-"))
    (work / "config").write_text(kubeconfig(srv.url, ns))
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(work / "config"), client_configuration=cfg)
    api = client.ApiClient(cfg)
    api.user_agent = TEST_UA
    c = Cluster(api, ns)
    op = OperatorProcess(work / "config", work, [ns], watch_timeout=30.0).start()
    try:
        t0 = time.time()
        for i in range(n):
            c.create(_eval_suite(ns, i))
        wait_for(lambda: len(c.children()) >= n, timeout=timeout, interval=1.0, what=f"{n} children")
        started = time.time() - t0
        requests = len(_operator_records(srv, t0))
        for child in c.children():
            c.finish(child)
        wait_for(lambda: c.all_done(), timeout=timeout, interval=1.0, what="every CR Succeeded")
        wait_for(lambda: _quiet_since(srv, 3.0), timeout=timeout, interval=1.0, what="the operator to settle")
        steady_from = time.time()
        time.sleep(steady_seconds)
        writes = sum(r.is_write for r in _operator_records(srv, steady_from))
        rss = _peak_rss_mib(op.proc.pid)
        op.stop()
        t1 = time.time()
        op.start(timeout=timeout)
        # resumed = every CR read by a reconcile of the new process, then nothing more to do
        reconciled = _Reconciled(srv, t1)
        wait_for(lambda: len(reconciled()) >= n, timeout=timeout, interval=0.5, what="every CR resumed")
        restart = time.time() - t1
        wait_for(lambda: _quiet_since(srv, 3.0), timeout=timeout, interval=1.0, what="the restarted operator to settle")
        restart_writes = sum(r.is_write for r in _operator_records(srv, t1))
    finally:
        op.stop()
        srv.stop()
    return {"crs": n, "requestsPerCrToStart": round(requests / n, 2), "secondsToAllStarted": round(started, 1),
            "peakRssMiB": round(rss, 1), f"writesIn{int(steady_seconds)}sSteady": writes,
            "restartSeconds": round(restart, 1), "writesAfterRestart": restart_writes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--steady-seconds", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=1800.0)
    a = ap.parse_args()
    rows = []
    for n in a.sizes:  # each row as soon as it is measured
        rows.append(run(n, a.steady_seconds, a.timeout))
        print(json.dumps(rows[-1]), flush=True)
    lo, hi = rows[0], rows[-1]
    if hi["crs"] > lo["crs"]:
        print(json.dumps({"restartRatio": round(hi["restartSeconds"] / max(lo["restartSeconds"], 0.1), 2),
                          "sizeRatio": hi["crs"] / lo["crs"]}))


if __name__ == "__main__":
    main()
