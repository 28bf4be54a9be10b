"""Labels on every child (Job, PyTorchJob) and its pods: which CR, which step, which generation."""
from .api import GROUP

MANAGED_BY = "vlmops"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
LABEL_KIND = f"{GROUP}/kind"
LABEL_NAME = f"{GROUP}/name"
LABEL_STEP = f"{GROUP}/step"
LABEL_GENERATION = f"{GROUP}/generation"
PARENT_ANNOTATION = f"{GROUP}/parent"
# Kubernetes sets it on the pods of Indexed Jobs; results of sharded steps are ordered by it.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
