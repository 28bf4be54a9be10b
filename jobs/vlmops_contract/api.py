"""The API group and version of the four kinds (CRDs, ownerReferences, labels)."""

GROUP = "vlmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
