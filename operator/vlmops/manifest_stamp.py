"""The image a job's pod actually ran, recorded in the manifest that pod committed.

A job cannot see its own image digest (the pod status' `imageID` is the kubelet's, not in the
downward API); the operator reads it from the finished pod and adds it to the manifest's
`environment.imageID`, which is informational (outside identity, `vlmops_contract.identity`): the
identity and every file stay as the job wrote them. The operator writes only the manifest of the
CR's own output, and only one that still verifies; without write access the image stays in
`status.output.image` only.
"""
from __future__ import annotations

import json
import logging

from vlmops_contract.identity import canonical_json, identity_of, sha256
from vlmops_contract.storage_env import fsspec_options

log = logging.getLogger("vlmops.manifest")


def stamp(manifest_uri: str, image_id: str) -> str | None:
    """Add `environment.imageID` to the manifest; returns the manifest's (new) sha256, or None when
    it could not be read, does not verify, or could not be written."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(manifest_uri, **fsspec_options(manifest_uri))
        with fs.open(path, "rb") as f:
            data = f.read()
        m = json.loads(data)
        if not m.get("identity") or identity_of(m) != m["identity"]:
            log.warning("%s does not verify: not recording the image in it", manifest_uri)
            return None
        env = m.setdefault("environment", {})
        if env.get("imageID") == image_id:
            return sha256(data)
        env["imageID"] = image_id
        out = canonical_json(m)
        assert identity_of(m) == m["identity"]  # informational: the identity does not move
        with fs.open(path, "wb") as f:  # one object PUT (S3) / one small file: replaced whole
            f.write(out)
        return sha256(out)
    except Exception as e:  # no credentials, read-only access, network: status keeps the image
        log.warning("could not record image %s in %s: %s", image_id, manifest_uri, e)
        return None
