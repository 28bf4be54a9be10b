"""The local runner: the operator's reconciler against a workdir instead of a cluster.

`LocalKube` stands in for the API server: CRs and children are JSON files in the workdir, and
"creating" a Job or PyTorchJob runs its container command as local processes with the same
environment contract as a pod. Because the reconciler, builders and status logic are the
operator's own, `vlmops run` and the cluster produce the same children and the same statuses.
"""
