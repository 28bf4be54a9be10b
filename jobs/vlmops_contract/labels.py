"""Labels on every child (Job, PyTorchJob) and its pods: which CR, which step, which generation."""
import hashlib

from .api import GROUP

MANAGED_BY = "vlmops"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
LABEL_KIND = f"{GROUP}/kind"
LABEL_NAME = f"{GROUP}/name"
LABEL_STEP = f"{GROUP}/step"
LABEL_GENERATION = f"{GROUP}/generation"
PARENT_ANNOTATION = f"{GROUP}/parent"
MAX_LABEL_VALUE = 63


def label_value(value: str) -> str:
    """`value` as a valid label value: CR names may be longer than 63 characters, so a long one is cut
    and suffixed with a digest of the whole (still unique, still alphanumeric at both ends). Whoever
    needs the exact name reads the child's `PARENT_ANNOTATION` (`Kind/name`)."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return value[: MAX_LABEL_VALUE - len(digest) - 1].rstrip("-_.") + "-" + digest


def parent_of(child_meta: dict) -> tuple[str, str] | None:
    """(kind, name) of the CR a child belongs to, from its annotation."""
    kind, _, name = ((child_meta.get("annotations") or {}).get(PARENT_ANNOTATION) or "").partition("/")
    return (kind, name) if kind and name else None


# Kubernetes sets it on the pods of Indexed Jobs; results of sharded steps are ordered by it.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
