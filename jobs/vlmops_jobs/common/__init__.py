"""Helpers every job shares: fsspec I/O with atomic commits, digests, lineage manifests, results."""
