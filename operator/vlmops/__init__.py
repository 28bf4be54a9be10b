"""vlmops: Kubernetes-native operator and local runner for reproducible VLM training."""

__version__ = "0.1.0"

