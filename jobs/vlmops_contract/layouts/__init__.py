"""Each job's output layout: names of what a job writes under its `--output`, one module per job.

The job that writes a layout and every reader (the next job, the operator, the local report) use
these names; nothing else spells them. `MANIFEST` is the commit marker every job writes last.
"""

MANIFEST = "manifest.json"


def join(base: str, *parts: str) -> str:
    """`base/part/...` for URIs and paths alike (no fsspec needed: the operator joins too)."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out
