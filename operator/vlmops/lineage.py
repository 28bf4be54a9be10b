"""Lineage of committed outputs: the chain from a CR's output to the raw inputs, checked by digest,
and the difference between two runs (`vlmops lineage`, `vlmops diff`).

Every output's manifest names its inputs by content digest; an input whose digest is another
output's identity links to that output's manifest. So the chain is followed by content, not by CR
references, and it ends at raw inputs (source tables, concepts, tokenizer, eval tasks). `verify`
recomputes what it can reach: each manifest's identity (the rule in `vlmops_contract.identity`),
each listed file's sha256 under its output, and each raw input's digest at its recorded location.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vlmops_contract.identity import identity_of, skipped, tree_digest
from vlmops_contract.layouts import join
from vlmops_contract.storage_env import fsspec_options


def _fs(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(uri))
    return fs, path


def read_json(uri: str) -> dict[str, Any] | None:
    try:
        fs, path = _fs(uri)
        with fs.open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def sha256_uri(uri: str) -> str:
    fs, path = _fs(uri)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def content_digest(uri: str) -> str:
    """A raw input's digest as the jobs record it: a file's sha256, a directory's tree digest."""
    fs, path = _fs(uri)
    if fs.isfile(path):
        return sha256_uri(uri)
    base = path.rstrip("/")
    proto = uri.split("://", 1)[0] + "://" if "://" in uri and not uri.startswith("file://") else ""
    return tree_digest({rel: sha256_uri(proto + p) for p in sorted(fs.find(base))
                        if (rel := p[len(base):].lstrip("/")) and not skipped(rel)})


@dataclass
class Node:
    """One output (a manifest) or one raw input (a leaf)."""

    name: str                       # the input's name in its consumer ("" for the root)
    digest: str | None              # the identity of an output, the content digest of a raw input
    uri: str | None = None          # where it was (is) stored
    kind: str | None = None         # CR kind / name for outputs
    cr: str | None = None
    manifest_uri: str | None = None
    manifest: dict[str, Any] | None = None
    inputs: list["Node"] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "digest": self.digest, "uri": self.uri}
        if self.manifest is not None:
            m = self.manifest
            d.update(kind=self.kind, cr=self.cr, manifest=self.manifest_uri, step=m.get("step"),
                     code=m.get("code"), environment=m.get("environment"), parameters=m.get("parameters"),
                     files=len(m.get("files") or {}))
        if self.inputs:
            d["inputs"] = [i.to_json() for i in self.inputs]
        return d


def outputs_by_identity(crs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """{identity: (CR, its manifest)} over every CR whose output is committed."""
    out = {}
    for cr in crs:
        o = (cr.get("status") or {}).get("output") or {}
        m = read_json(o["manifest"]) if o.get("manifest") else None
        if m and m.get("identity"):
            out[m["identity"]] = (cr, m)
    return out


def _entries(inputs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, v in sorted(inputs.items()):
        for i, e in enumerate(v if isinstance(v, list) else [v]):
            out.append((name if not isinstance(v, list) else f"{name}[{i}]", e))
    return out


def chain(crs: list[dict[str, Any]], name: str) -> Node:
    """The lineage tree of CR `name`'s output. KeyError: no such CR; ValueError: not committed."""
    by_name = {c["metadata"]["name"]: c for c in crs}
    cr = by_name[name]
    o = (cr.get("status") or {}).get("output") or {}
    m = read_json(o["manifest"]) if o.get("manifest") else None
    if m is None:
        raise ValueError(f"{cr['kind']}/{name} has no committed output yet")
    known = outputs_by_identity(crs)

    def node(label: str, c: dict[str, Any], manifest: dict[str, Any], seen: frozenset) -> Node:
        out = (c.get("status") or {}).get("output") or {}
        n = Node(label, manifest.get("identity"), out.get("uri"), c["kind"], c["metadata"]["name"],
                 out.get("manifest"), manifest)
        for in_name, e in _entries(manifest.get("inputs") or {}):
            d = e.get("identity") or e.get("digest")
            if d in known and d not in seen:
                up_cr, up_m = known[d]
                n.inputs.append(node(in_name, up_cr, up_m, seen | {d}))
            else:
                uri = e.get("uri")
                if uri and "://" not in uri and not uri.startswith("/") and out.get("uri"):
                    uri = join(out["uri"], uri)  # relative to the consumer's output (e.g. lengths parts)
                n.inputs.append(Node(in_name, e.get("digest"), uri))
        return n

    return node("", cr, m, frozenset({m.get("identity")}))


def verify(root: Node) -> tuple[int, list[str]]:
    """(checks made, problems): every reachable manifest's identity and files, every raw input."""
    checks, problems, done = 0, [], set()

    def visit(n: Node) -> None:
        nonlocal checks
        key = (n.manifest_uri or n.uri, n.digest)
        if key in done:
            return
        done.add(key)
        if n.manifest is not None:
            m = n.manifest
            checks += 1
            if identity_of(m) != m.get("identity"):
                problems.append(f"{n.manifest_uri}: identity {m.get('identity')} does not match its content "
                                f"({identity_of(m)})")
            for rel, want in sorted({**(m.get("files") or {}), **(m.get("rawFiles") or {})}.items()):
                uri = join(n.uri, rel)
                checks += 1
                try:
                    got = sha256_uri(uri)
                except OSError:
                    problems.append(f"{uri}: missing (listed in {n.manifest_uri})")
                    continue
                if got != want:
                    problems.append(f"{uri}: sha256 {got}, {n.manifest_uri} says {want}")
        elif n.uri and n.digest and not n.uri.startswith("hf://"):
            checks += 1
            try:
                got = content_digest(n.uri)
            except OSError:
                problems.append(f"{n.uri}: missing (input {n.name!r})")
                got = n.digest
            if got != n.digest:
                problems.append(f"{n.uri}: digest {got}, recorded {n.digest} (input {n.name!r})")
        for i in n.inputs:
            visit(i)

    visit(root)
    return checks, problems


def render(n: Node, depth: int = 0) -> list[str]:
    pad = "  " * depth
    label = f"{n.name}: " if n.name else ""
    if n.manifest is None:
        return [f"{pad}{label}{n.digest or '(no digest)'}  {n.uri or ''}".rstrip()]
    m = n.manifest
    code, env = m.get("code") or {}, m.get("environment") or {}
    lines = [f"{pad}{label}{n.kind}/{n.cr} [{m.get('step')}] identity {n.digest}",
             f"{pad}  output {n.uri}",
             f"{pad}  code {code.get('version')} tree {code.get('tree')}" + (f" commit {code['commit']}"
                                                                               if code.get("commit") else ""),
             f"{pad}  environment packages {env.get('packages')}" + (f" image {env['image']}" if env.get("image")
                                                                     else "")]
    for i in n.inputs:
        lines += render(i, depth + 1)
    return lines


def diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """What differs in identity between two manifests of the same output: parameters, inputs by
    content, output files, code, environment. Empty: same identity."""
    if a is None or b is None:
        return ["missing on one side"]
    if a.get("identity") == b.get("identity"):
        return []
    out = []
    pa, pb = a.get("parameters") or {}, b.get("parameters") or {}
    for k in sorted(set(pa) | set(pb)):
        if pa.get(k) != pb.get(k):
            out.append(f"parameter {k}: {json.dumps(pa.get(k))} -> {json.dumps(pb.get(k))}")
    ia, ib = dict(_entries(a.get("inputs") or {})), dict(_entries(b.get("inputs") or {}))
    for k in sorted(set(ia) | set(ib)):
        da = (ia.get(k) or {}).get("identity") or (ia.get(k) or {}).get("digest")
        db = (ib.get(k) or {}).get("identity") or (ib.get(k) or {}).get("digest")
        if da != db:
            out.append(f"input {k}: {da} -> {db}")
    fa, fb = a.get("files") or {}, b.get("files") or {}
    changed = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    if changed:
        out.append(f"files ({len(changed)}): " + ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else ""))
    for key in ("code", "environment", "kind", "step"):
        va, vb = a.get(key), b.get(key)
        if key in ("code", "environment"):
            va = {k: v for k, v in (va or {}).items() if k not in ("commit", "image")}
            vb = {k: v for k, v in (vb or {}).items() if k not in ("commit", "image")}
        if va != vb:
            out.append(f"{key}: {json.dumps(va)} -> {json.dumps(vb)}")
    return out or ["identity differs (no field-level difference found)"]


def manifest_of(cr: dict[str, Any] | None) -> dict[str, Any] | None:
    o = ((cr or {}).get("status") or {}).get("output") or {}
    return read_json(o["manifest"]) if o.get("manifest") else None
