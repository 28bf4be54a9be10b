"""Two replicas started together: one leads (one child per step), the other takes over when it dies."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from operator_harness import LEADER_NAMESPACE, OperatorProcess, wait_for
from pipeline_driver import Cluster

NS = LEADER_NAMESPACE
LEASE = ["--leader-election-namespace", NS, "--leader-election-id", "vlmops-test", "--lease-duration", "4"]


def _eval_suite(name: str) -> dict:
    return {"apiVersion": "vlmops.dev/v1alpha1", "kind": "EvalSuite", "metadata": {"name": name, "namespace": NS},
            "spec": {"model": {"checkpoint": "s3://models/ckpt"}, "lmmsEval": {"tasks": ["mmmu_val"]},
                     "output": {"uri": f"s3://evals/{name}"}}}


@pytest.fixture
def replicas(kubeconfig_path):
    ops = [OperatorProcess(kubeconfig_path, Path(tempfile.mkdtemp(prefix=f"vlmops-replica{i}-")), [NS],
                           extra_args=LEASE) for i in range(2)]
    try:
        for op in ops:  # both report healthy while one of them waits for the lease
            op.start()
        yield ops
    finally:
        for op in ops:
            op.stop()


def _leading(op: OperatorProcess) -> bool:
    return " leads" in op.log_path.read_text()


def test_two_replicas_reconcile_as_one_and_the_follower_takes_over(api_client, emulator, replicas):
    c = Cluster(api_client, NS)
    leader = wait_for(lambda: [op for op in replicas if _leading(op)], timeout=30, what="a leader")
    assert len(leader) == 1
    c.create(_eval_suite("first"))
    wait_for(lambda: c.children(), timeout=30, what="the first child")
    assert len(c.children()) == 1
    (follower,) = [op for op in replicas if op is not leader[0]]
    assert "created Job" not in follower.log_path.read_text()
    leader[0].kill()
    wait_for(lambda: _leading(follower), timeout=30, what="the follower to lead")
    c.create(_eval_suite("second"))
    wait_for(lambda: len(c.children()) == 2, timeout=30, what="a child from the new leader")
    assert "created Job leader/second-eval-g1" in follower.log_path.read_text()
