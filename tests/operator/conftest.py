"""Fixtures for the operator tests: the emulated API server, a kubeconfig, the official client,
and the real operator process pointed at the emulator."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness modules live next to the tests

from emulated_apiserver import EmulatorServer, kubeconfig  # noqa: E402
from operator_harness import (FAULTS_NAMESPACE, IMAGE_NAMESPACE, LEADER_NAMESPACE, NAMESPACES, TEST_UA,  # noqa: E402
                              OperatorProcess, crd_docs)


@pytest.fixture(scope="session")
def emulator():
    srv = EmulatorServer(crd_docs(), namespaces=["default", *NAMESPACES, FAULTS_NAMESPACE, LEADER_NAMESPACE, IMAGE_NAMESPACE]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def kubeconfig_path(emulator, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("kube") / "config"
    p.write_text(kubeconfig(emulator.url, "vlm"))
    return p


@pytest.fixture(scope="session")
def api_client(kubeconfig_path):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig_path), client_configuration=cfg)
    api = client.ApiClient(cfg)
    api.user_agent = TEST_UA  # so the journal tells the tests' writes from the operator's
    return api


@pytest.fixture(scope="session")
def operator(kubeconfig_path):
    # Logs go to a private mkdtemp (not pytest's tmp_path: other sessions' pytest runs rotate those).
    op = OperatorProcess(kubeconfig_path, Path(tempfile.mkdtemp(prefix="vlmops-operator-")), NAMESPACES).start()
    try:
        yield op
    finally:
        op.stop()
