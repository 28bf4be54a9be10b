"""Every API call the operator makes is allowed by the chart's RBAC, in both watch modes.

The permission list comes from `vlmops.kube.REQUIRED_PERMISSIONS` when the operator exports one;
otherwise from REQUIRED_PERMISSIONS below, read off operator/vlmops/kube.py and kopf's needs.
"""
from __future__ import annotations

import pytest

from chart_helpers import find, one

PLURALS = ["balancedcorpora", "packeddatasets", "vlmtrainingstages", "evalsuites", "vlmrlstages"]

# (apiGroup, resource, verb, scope): scope "ns" = in each watched namespace, "cluster" = cluster-scoped,
# "release" = the release namespace only (the leader-election Lease).
REQUIRED_PERMISSIONS: list[tuple[str, str, str, str]] = [
    # kube.py: get_cr, patch_cr_status; kopf: list (its watches and the reference indices)
    *[("vlmops.dev", p, v, "ns") for p in PLURALS for v in ("get", "list")],
    *[("vlmops.dev", f"{p}/status", "patch", "ns") for p in PLURALS],
    # admission (OwnerReferencesPermissionEnforcement): children block their owner's deletion
    *[("vlmops.dev", f"{p}/finalizers", "update", "ns") for p in PLURALS],
    # kopf: watch the CRs; patch them for its progress/diff-base annotations and the finalizer
    *[("vlmops.dev", p, v, "ns") for p in PLURALS for v in ("watch", "patch")],
    # kube.py: get_child / create_child / adopt_child (Jobs and PyTorchJobs); kopf watches both
    *[("batch", "jobs", v, "ns") for v in ("get", "create", "patch", "list", "watch", "delete")],
    *[("kubeflow.org", "pytorchjobs", v, "ns") for v in ("get", "create", "patch", "list", "watch", "delete")],
    *[("trainer.kubeflow.org", "trainjobs", v, "ns") for v in ("get", "create", "patch", "list", "watch", "delete")],
    # kube.py: list_pods (termination messages), post_event
    ("", "pods", "list", "ns"),
    ("", "events", "create", "ns"),
    # kopf: namespace and CRD discovery (cluster-scoped, needed in both modes)
    ("", "namespaces", "list", "cluster"),
    ("", "namespaces", "watch", "cluster"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list", "cluster"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch", "cluster"),
    *[("coordination.k8s.io", "leases", v, "release") for v in ("get", "create", "update")],
]


def required_permissions() -> list[tuple[str, str, str, str]]:
    try:
        from vlmops import kube
    except ImportError:
        return REQUIRED_PERMISSIONS
    exported = getattr(kube, "REQUIRED_PERMISSIONS", None)
    if not exported:
        return REQUIRED_PERMISSIONS
    out = []
    for p in exported:  # accept (group, resource, verb[, scope]) tuples or dicts with those keys
        if isinstance(p, dict):
            p = (p.get("apiGroup", p.get("group", "")), p["resource"], p["verb"], p.get("scope", "ns"))
        group, resource, verb, *scope = p
        if not scope:
            scope = ["cluster" if resource in ("namespaces", "customresourcedefinitions") else "ns"]
        out.append((group, resource, verb, scope[0]))
    return out


def allows(rules, group: str, resource: str, verb: str) -> bool:
    for r in rules:
        if r.get("resourceNames"):
            continue  # a name-restricted rule does not cover list/watch/create of arbitrary objects
        if (group in r.get("apiGroups", []) or "*" in r.get("apiGroups", [])) and \
                (resource in r.get("resources", []) or "*" in r.get("resources", [])) and \
                (verb in r.get("verbs", []) or "*" in r.get("verbs", [])):
            return True
    return False


def bound_rules(objs, sa_name: str, sa_ns: str, namespace: str | None):
    """Rules the ServiceAccount gets cluster-wide (namespace=None) or in `namespace`."""
    rules = []
    subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}
    for b in find(objs, "ClusterRoleBinding"):
        if subject in b["subjects"]:
            rules += one(objs, "ClusterRole", b["roleRef"]["name"])["rules"]
    if namespace is not None:
        for b in find(objs, "RoleBinding"):
            if b["metadata"]["namespace"] != namespace or subject not in b["subjects"]:
                continue
            if b["roleRef"]["kind"] == "ClusterRole":
                rules += one(objs, "ClusterRole", b["roleRef"]["name"])["rules"]
            else:
                rules += [r for role in find(objs, "Role", b["roleRef"]["name"])
                          if role["metadata"]["namespace"] == namespace for r in role["rules"]]
    return rules


def _sa(objs):
    dep = one(objs, "Deployment")
    return dep["spec"]["template"]["spec"]["serviceAccountName"], dep["metadata"]["namespace"]


def _missing(objs, sa: str, ns: str, namespace: str | None) -> list:
    """Required permissions not granted where they are needed: `namespace` (None: cluster-wide) for
    the "ns" and "cluster" ones, the release namespace for the "release" ones."""
    rules, release = bound_rules(objs, sa, ns, namespace), bound_rules(objs, sa, ns, ns)
    return [p for p in required_permissions() if not allows(release if p[3] == "release" else rules, *p[:3])]


def test_cluster_wide_mode_covers_every_call(default_objs):
    sa, ns = _sa(default_objs)
    missing = _missing(default_objs, sa, ns, None)
    assert not missing, f"chart RBAC misses: {missing}"
    assert not allows(bound_rules(default_objs, sa, ns, None), "coordination.k8s.io", "leases", "update")


def test_namespaced_mode_covers_every_call_in_each_namespace_only(helm):
    objs = helm.render({"watch": {"allNamespaces": False, "namespaces": ["ml-a", "ml-b"]}})
    sa, ns = _sa(objs)
    cluster_rules = bound_rules(objs, sa, ns, None)
    for watched in ("ml-a", "ml-b"):
        missing = _missing(objs, sa, ns, watched)
        assert not missing, f"{watched}: chart RBAC misses {missing}"
    # least privilege: namespaced permissions are not granted cluster-wide, nor in other namespaces
    for group, resource, verb, scope in required_permissions():
        if scope == "ns":
            assert not allows(cluster_rules, group, resource, verb), (group, resource, verb)
            assert not allows(bound_rules(objs, sa, ns, "kube-system"), group, resource, verb)


def test_rbac_grants_least_privilege(default_objs):
    """No wildcards, no Secrets, no deletes, nothing beyond what the operator uses."""
    sa, ns = _sa(default_objs)
    rules = bound_rules(default_objs, sa, ns, None)
    for r in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in r[field], r
    for verb in ("get", "list", "watch"):
        assert not allows(rules, "", "secrets", verb)
    granted = {(g, res, v) for r in rules for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    needed = {p[:3] for p in required_permissions()}
    # the only extras allowed: reads that make kopf/kubectl debugging possible on the same objects
    extras = {x for x in granted - needed if x[2] not in ("get",)}
    assert not extras, f"RBAC grants more than the operator needs: {sorted(extras)}"
    assert not any(v in ("deletecollection", "escalate", "bind", "impersonate") for (_, _, v) in granted)
    # delete only on our children (stopping a superseded generation), never on CRs, pods or anything else
    assert {res for (_, res, v) in granted if v == "delete"} == {"jobs", "pytorchjobs", "trainjobs"}
    # update only on the CRs' finalizers (what blockOwnerDeletion on our children requires), nothing else
    assert {res for (_, res, v) in granted if v == "update"} == {f"{p}/finalizers" for p in PLURALS}


def test_rbac_can_be_turned_off(helm):
    objs = helm.render({"rbac": {"create": False, "aggregateToDefaultRoles": False},
                        "serviceAccount": {"create": False, "name": "existing-sa"}})
    assert not find(objs, "ClusterRole") and not find(objs, "Role") and not find(objs, "ServiceAccount")
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"


def test_user_roles_aggregate_into_the_builtin_ones(default_objs):
    edit = one(default_objs, "ClusterRole", "vlmops-edit")
    view = one(default_objs, "ClusterRole", "vlmops-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for p in PLURALS:
        for v in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert allows(edit["rules"], "vlmops.dev", p, v)
        for v in ("get", "list", "watch"):
            assert allows(view["rules"], "vlmops.dev", p, v)
        assert allows(view["rules"], "vlmops.dev", f"{p}/status", "get")
        assert not allows(view["rules"], "vlmops.dev", p, "create")
        # users never write status: that is the operator's record of what was checked
        assert not allows(edit["rules"], "vlmops.dev", f"{p}/status", "patch")


@pytest.mark.parametrize("kind", ["ClusterRole", "Role"])
def test_rbac_names_cover_every_crd(helm, kind):
    """The plurals in RBAC rules are exactly the CRDs the chart installs."""
    objs = helm.render({"watch": {"allNamespaces": kind == "ClusterRole",
                                  **({} if kind == "ClusterRole" else {"namespaces": ["ml-a"]})}})
    plurals = sorted(c["spec"]["names"]["plural"] for c in find(objs, "CustomResourceDefinition"))
    assert plurals == sorted(PLURALS)
    role = one(objs, kind, "vlmops-operator")
    ours = sorted({res for r in role["rules"] if "vlmops.dev" in r["apiGroups"] for res in r["resources"]
                   if "/" not in res})
    assert ours == plurals
