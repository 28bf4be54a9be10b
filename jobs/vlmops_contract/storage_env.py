"""How a pod learns where object storage is: environment variables the builders set and every
reader (jobs, the operator's progress mirror) turns into fsspec options."""
from __future__ import annotations

import os
from typing import Any

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
REGION_ENV = "AWS_REGION"
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # only ever from a Secret


def fsspec_options(uri: str) -> dict[str, Any]:
    """S3 options from the environment: endpoint and region (credentials: the usual env chain)."""
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    client_kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(ENDPOINT_ENV)
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get(REGION_ENV) or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    return {"client_kwargs": client_kwargs} if client_kwargs else {}
