"""vlmops: Kubernetes-native operator and local runner for reproducible VLM training."""

__version__ = "0.1.0"

from vlmops_contract.api import API_VERSION, GROUP, VERSION  # noqa: F401  (vlmops.GROUP etc.)
