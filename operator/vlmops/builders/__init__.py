"""Builders: a validated spec (+ its inputs) in, ordered child manifests out. Pure, no I/O.

One module per kind (`build(cr, spec, inputs, ctx) -> Plan`); `common` holds what every child
shares (names, labels, owner references, pod templates). `vlmops.kinds` registers them.
"""
from __future__ import annotations

from .common import BuildContext, Plan, Step, child_name
from .inputs import Inputs

__all__ = ["BuildContext", "Inputs", "Plan", "Step", "child_name"]
