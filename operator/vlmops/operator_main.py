"""`vlmops operator`: run the kopf operator with metrics and liveness endpoints."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import leader, liveness
from .config import load_config  # the one config file -> BuildContext mapping (render/validate use it too)
from .handlers import Operator, configure, register


def run(namespaces: list[str], all_namespaces: bool, metrics_port: int, health_port: int,
        config: str | None, watch_timeout: float | None = None, resync_interval: float = 60.0,
        api_timeout: float = 30.0, stall_after: float = 300.0, leader_election_namespace: str | None = None,
        leader_election_id: str = "vlmops-operator", lease_duration: int = 15) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = load_config(config)
    if ctx.storage:  # the progress timer reads progress.json with the same storage defaults as jobs
        if ctx.storage.endpoint_url:
            os.environ.setdefault("AWS_ENDPOINT_URL", ctx.storage.endpoint_url)
        if ctx.storage.region:
            os.environ.setdefault("AWS_REGION", ctx.storage.region)
    registry = kopf.OperatorRegistry()
    op = Operator(ctx, resync_interval=resync_interval, api_timeout=api_timeout, stall_after=stall_after)
    if health_port:
        liveness.serve(health_port, op.clock)  # before the election: a waiting follower is alive too
    if leader_election_namespace:
        from kubernetes import config as kube_config

        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            kube_config.load_kube_config()
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        leader.wait_until_leading(leader_election_namespace, leader_election_id, identity,
                                  lease_duration=lease_duration, renew_deadline=max(2, lease_duration * 2 // 3),
                                  retry_period=max(1, lease_duration // 7))
    register(op, registry)

    # A private registry does not carry kopf's default login handlers: without this the operator
    # starts, stays "alive", and never authenticates. login_via_client tries in-cluster first,
    # then $KUBECONFIG, and also configures the kubernetes client that `Kube` uses.
    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> Any:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, watch_timeout, api_timeout)
        if metrics_port:
            start_http_server(metrics_port)

    asyncio.run(kopf.operator(
        registry=registry,
        clusterwide=all_namespaces,
        namespaces=namespaces or None,
        standalone=True,
    ))
