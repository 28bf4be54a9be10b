"""API types, the single source of truth for each kind: `api/<kind>.py` holds its spec and status
models and its `KIND` (names, columns); CRDs are generated from them (`vlmops crds`)."""
