"""vlmops data, training and evaluation jobs: plain CLIs that run the same in a pod and locally.

Each job is `python -m vlmops_jobs.<job> <step> [flags]`. All I/O goes through fsspec URIs.
Outputs are committed atomically (data first, manifest last) with digests and lineage, and
the last line a job prints is its result as JSON (see `vlmops_jobs.common.result`).
"""
