"""One active operator among replicas: leader election on a coordination.k8s.io Lease, with the
kubernetes client's own implementation. Followers wait; a leader that cannot renew its lease exits
(the kubelet restarts it as a follower), so two replicas never reconcile at once."""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("vlmops.leader")


def wait_until_leading(namespace: str, name: str, identity: str, lease_duration: int = 15,
                       renew_deadline: int = 10, retry_period: int = 2) -> None:
    """Block until this process holds the Lease `namespace/name`; keep renewing it in the background.
    The kubernetes client configuration must be loaded already."""
    from kubernetes.leaderelection import electionconfig, leaderelection
    from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

    leading = threading.Event()

    def lead() -> None:  # runs for as long as we lead: kopf runs in the main thread meanwhile
        leading.set()
        threading.Event().wait()

    def lost() -> None:
        log.error("lost the lease %s/%s: exiting so that only one replica reconciles", namespace, name)
        os._exit(1)

    config = electionconfig.Config(LeaseLock(name, namespace, identity), lease_duration, renew_deadline,
                                   retry_period, onstarted_leading=lead, onstopped_leading=lost)
    threading.Thread(target=leaderelection.LeaderElection(config).run, daemon=True, name="leader-election").start()
    log.info("%s waiting to lead (Lease %s/%s)", identity, namespace, name)
    leading.wait()
    log.info("%s leads", identity)
