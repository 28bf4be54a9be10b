"""vlmops: Kubernetes-native operator and local runner for reproducible VLM training."""

__version__ = "0.1.0"

GROUP = "vlmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
