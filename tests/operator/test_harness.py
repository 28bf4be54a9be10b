"""The test harness itself: an operator process it started never outlives a failure."""
from __future__ import annotations

import pytest

from operator_harness import OperatorProcess


def test_an_operator_that_never_becomes_healthy_is_stopped_by_the_failing_start(kubeconfig_path, tmp_path,
                                                                                 monkeypatch):
    op = OperatorProcess(kubeconfig_path, tmp_path, ["smoke"])
    monkeypatch.setattr(op, "healthy", lambda: False)  # its /healthz never answers in time
    with pytest.raises(AssertionError, match="operator liveness"):
        op.start(timeout=2)
    assert op.proc is not None and op.proc.poll() is not None, "the operator process was left running"
