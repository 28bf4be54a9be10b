"""A thin test-side layer over kmock's `KubernetesEmulator`, served over HTTP on 127.0.0.1.

kmock 0.8 stores objects and streams watch events, but on its own it is too lenient (and in a few
places too bare) for a real kopf operator and the official `kubernetes` client. This layer adds
what they rely on, and nothing more:

- metadata stamping on create: uid, resourceVersion (one global counter, bumped on every write),
  creationTimestamp, generation=1, namespace, `generateName`;
- 201 on create (kubernetes >= 36 returns None from CustomObjectsApi.create_* otherwise), 409
  AlreadyExists on a duplicate;
- PATCH by content type: merge-patch (strategic-merge is approximated by merge-patch), JSON patch
  (RFC 6902, incl. kopf's `test` op on resourceVersion -> 422 on mismatch), 400 when the body
  does not fit the declared content type (e.g. a dict sent as json-patch+json);
- the status subresource: PATCH .../status changes only `.status`; the main resource ignores
  `.status` (for kinds that have the subresource); create drops `.status`;
- generation bumps when anything outside metadata/status changes; a no-op patch writes nothing
  (no resourceVersion bump, no watch event), as on a real API server;
- optimistic concurrency: PUT and merge patches carrying metadata.resourceVersion get 409 on a
  mismatch;
- list/watch: equality/existence label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`), field
  selectors on metadata.name/namespace, `List` kind + a real list resourceVersion, watch from a
  resourceVersion (replays the journal instead of kmock's "ADDED for everything"), and
  `timeoutSeconds` ends the stream (kmock streams forever);
- cluster-scoped `v1/namespaces` (bare kmock answers 500 on the namespace list);
- discovery for our four CRDs, batch/v1 jobs, kubeflow.org/v1 pytorchjobs, trainer.kubeflow.org trainjobs, v1 pods and events;
- a journal of every request (time, method, path, user agent, status) for write counting.

Still not emulated (covered elsewhere, see tests/reconcile/): garbage
collection via ownerReferences, schema validation/defaulting and CEL rules, admission, RBAC,
server-side apply, strategic-merge list semantics, Job/PyTorchJob controllers (the tests play
the controllers by patching child status and creating pods).
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import random
import re
import string
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import parsing, rendering
from kmock._internal.enums import action
from vlmops import mergepatch

# (group/version/plural, kind, namespaced, shortnames, has status subresource)
CORE_RESOURCES = [
    ("v1/namespaces", "Namespace", False, ["ns"], True),
    ("v1/pods", "Pod", True, ["po"], True),
    ("v1/events", "Event", True, ["ev"], False),
    ("v1/configmaps", "ConfigMap", True, ["cm"], False),
    ("batch/v1/jobs", "Job", True, [], True),
    ("kubeflow.org/v1/pytorchjobs", "PyTorchJob", True, [], True),
    ("trainer.kubeflow.org/v1alpha1/trainjobs", "TrainJob", True, [], True),
    ("coordination.k8s.io/v1/leases", "Lease", True, [], False),
]
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock reads /api/v1/namespaces[/NAME] as a namespaced URL missing its plural (-> 500);
    parse the cluster-scoped Namespace resource as such."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


parsing.parse_path = _parse_path_with_namespaces  # the one place kmock itself is patched


def _method(request: rendering.Request) -> str:
    m = request.method
    return str(getattr(m, "value", m)).upper()


def parse_label_selector(sel: str | None) -> list[tuple[str, str, str | None]]:
    """Equality/existence selectors only: [(op, key, value)], op in = != exists !exists."""
    reqs = []
    for part in (sel or "").split(","):
        part = part.strip()
        if not part:
            continue
        if " in " in part or " notin " in part or "(" in part:
            raise kmock.KubernetesError(status=400, reason="BadRequest",
                                        message=f"set-based selectors are not emulated: {part!r}")
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(("!=", k.strip(), v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append(("=", k.strip(), v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append(("=", k.strip(), v.strip()))
        elif part.startswith("!"):
            reqs.append(("!exists", part[1:].strip(), None))
        else:
            reqs.append(("exists", part, None))
    return reqs


def labels_match(labels: dict[str, str], reqs: list[tuple[str, str, str | None]]) -> bool:
    for op, k, v in reqs:
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!exists" and k in labels:
            return False
    return True


def fields_match(obj: dict[str, Any], sel: str | None) -> bool:
    meta = obj.get("metadata") or {}
    for part in (sel or "").split(","):
        if not part.strip():
            continue
        neg = "!=" in part
        k, v = part.replace("==", "=").replace("!=", "=").split("=", 1)
        have = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}.get(k.strip())
        if (have == v.strip()) == neg:
            return False
    return True


@dataclass
class Record:
    """One served request, for assertions (e.g. 'no writes for 10 s')."""

    at: float
    method: str
    path: str
    query: str
    user_agent: str
    status: int
    seconds: float = 0.0

    @property
    def is_write(self) -> bool:
        return self.method.upper() not in ("GET", "HEAD", "OPTIONS")


@dataclass
class Fault:
    """Injected into the next `times` requests matching method and path (a regex): wait `delay`
    seconds (a hung call), then answer `status` (an error) or serve the request normally."""

    method: str
    path: str
    status: int | None = None
    delay: float = 0.0
    times: int = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.hits < self.times and method == self.method and re.search(self.path, path) is not None


@attrs.define(kw_only=True)
class VlmopsEmulator(kmock.KubernetesEmulator):
    _rv: int = attrs.field(default=0, init=False)
    _journal: list[tuple[int, Any, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _status_sub: set = attrs.field(factory=set, init=False)
    _namespaced: dict = attrs.field(factory=dict, init=False)
    _kinds: dict = attrs.field(factory=dict, init=False)
    records: list[Record] = attrs.field(factory=list, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)

    # -- setup -------------------------------------------------------------------------------
    def declare(self, key: str, kind: str, *, namespaced: bool = True, shortnames: Iterable[str] = (),
                categories: Iterable[str] = (), status: bool = True) -> None:
        res = kmock.resource(key)
        self.resources[res] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=set(VERBS),
            shortnames=set(shortnames), categories=set(categories), subresources={"status"} if status else set())
        self._namespaced[res] = namespaced
        self._kinds[res] = kind
        if status:
            self._status_sub.add(res)

    def declare_defaults(self, crd_docs: Iterable[dict[str, Any]]) -> None:
        for key, kind, namespaced, short, status in CORE_RESOURCES:
            self.declare(key, kind, namespaced=namespaced, shortnames=short, status=status)
        for crd in crd_docs:
            spec = crd["spec"]
            for v in spec["versions"]:
                self.declare(f"{spec['group']}/{v['name']}/{spec['names']['plural']}", spec["names"]["kind"],
                             namespaced=spec["scope"] == "Namespaced",
                             shortnames=spec["names"].get("shortNames") or [],
                             categories=spec["names"].get("categories") or [],
                             status="status" in (v.get("subresources") or {}))

    # -- request dispatch ----------------------------------------------------------------------
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        started = time.time()
        status = 500
        try:
            fault = next((f for f in self.faults if f.matches(_method(request), request.url.path)), None)
            if fault is not None:
                fault.hits += 1
                await asyncio.sleep(fault.delay)
                if fault.status:
                    raise kmock.KubernetesError(status=fault.status, reason="InternalError",
                                                message="injected by the test")
            resp = await self._dispatch(request)
            status = resp.status
            return resp
        except kmock.KubernetesError as e:
            status = e.status
            raise
        except (asyncio.CancelledError, ConnectionError):
            status = 499  # the client went away (e.g. a killed operator's open watches)
            raise
        finally:
            self.records.append(Record(started, _method(request), request.url.path, request.url.query_string,
                                       request.headers.get("User-Agent", ""), status, time.time() - started))

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        method = _method(request)
        if request.url.path in ("/apis/", "/api/"):  # the official client's spelling of discovery
            serve = self._serve_apis if request.url.path == "/apis/" else self._serve_api
            return self._json(await serve(request))
        if request.resource is not None and request.resource.plural:
            self._known(request.resource)
            if request.action == action.CREATE and request.subresource is None:
                return await self._create(request)
            if method == "PATCH" and request.name:
                return await self._patch(request)
            if method == "PUT" and request.name:
                return await self._replace(request)
            if method == "DELETE" and request.name:
                return await self._delete(request)
            if method not in ("GET", "HEAD"):
                raise kmock.KubernetesError(status=405, reason="MethodNotAllowed",
                                            message=f"{method} {request.url.path} is not emulated")
            # Reads skip kmock's reaction DSL (matching every request against every filter costs
            # ~10 ms a request, which made the API server the operator's bottleneck).
            if request.action == action.WATCH:
                return await self._stream_watch(request)
            if request.action == action.LIST:
                return self._json(await self._serve_list(request))
            if request.action == action.FETCH:
                return self._json(await self._serve_fetch(request))
        return await super()._handle(request)

    async def _stream_watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self._known(request.resource)
        resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request._raw_request)
        try:
            async for event in self._serve_watch(request):
                if isinstance(event, dict):
                    await resp.write(json.dumps(event).encode() + b"\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return resp

    def _known(self, res: Any) -> None:
        if res not in self._namespaced:
            raise kmock.KubernetesResourceNotFoundError()

    def _key(self, res: Any, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        return (res, namespace if self._namespaced[res] else None, name)

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    async def _emit(self, res: Any, type_: str, raw: dict[str, Any]) -> None:
        raw = copy.deepcopy(raw)
        self._journal.append((int(raw["metadata"]["resourceVersion"]), res, {"type": type_, "object": raw}))
        await self._buses[res].put({"type": type_, "object": raw})

    def _current(self, key) -> dict[str, Any]:
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return copy.deepcopy(self._objects[key].raw)

    def _store(self, key, new: dict[str, Any]) -> None:
        if key not in self._objects:
            self._objects[key] = new
        else:
            self._objects[key].create(new)  # appends a new version to the object's history

    @staticmethod
    def _json(obj: dict[str, Any], status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(obj, status=status)

    # -- writes ----------------------------------------------------------------------------------
    async def _create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        data = request.data
        if not isinstance(data, dict):
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="create needs a JSON object")
        data = copy.deepcopy(data)
        meta = data.setdefault("metadata", {})
        if self._namespaced[res]:
            ns = request.namespace or meta.get("namespace")
            if meta.get("namespace") and request.namespace and meta["namespace"] != request.namespace:
                raise kmock.KubernetesError(status=400, reason="BadRequest",
                                            message="the namespace of the object does not match the URL")
            meta["namespace"] = ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if not meta.get("name"):
            raise kmock.KubernetesError(status=422, reason="Invalid", message="metadata.name: Required value")
        data.setdefault("apiVersion", f"{res.group}/{res.version}" if res.group else res.version)
        data.setdefault("kind", self._kinds[res])
        if res in self._status_sub and res != kmock.resource("v1/namespaces"):
            data.pop("status", None)
        key = self._key(res, meta.get("namespace"), meta["name"])
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                raise kmock.KubernetesError(status=409, reason="AlreadyExists",
                                            message=f'{res.plural} "{meta["name"]}" already exists')
            meta.update(uid=str(uuid.uuid4()), resourceVersion=self._bump(), creationTimestamp=_now(), generation=1)
            meta.pop("deletionTimestamp", None)
            self._store(key, data)
            await self._emit(res, "ADDED", data)
        return self._json(data, 201)

    def _apply_patch(self, request: rendering.Request, obj: dict[str, Any]) -> dict[str, Any]:
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = request.data
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise kmock.KubernetesError(status=400, reason="BadRequest",
                                            message="json-patch+json needs a JSON array of operations")
            try:
                return jsonpatch.apply_patch(obj, body)
            except jsonpatch.JsonPatchTestFailed as e:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=f"the test operation failed: {e}")
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=str(e))
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise kmock.KubernetesError(status=400, reason="BadRequest", message="merge patch needs a JSON object")
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != obj["metadata"].get("resourceVersion"):
                raise kmock.KubernetesError(status=409, reason="Conflict",
                                            message="the object has been modified; please apply your changes "
                                                    "to the latest version and try again")
            return mergepatch.apply(obj, body)
        raise kmock.KubernetesError(status=415, reason="UnsupportedMediaType",
                                    message=f"content type {ctype!r} is not emulated")

    def _finish_update(self, res: Any, sub: str | None, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        if sub == "status":
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = new["status"]
            else:
                out.pop("status", None)
            new = out
        else:
            if res in self._status_sub:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            body = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
            if body(new) != body(old):
                meta["generation"] = int(old["metadata"].get("generation") or 1) + 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return new

    async def _commit(self, res: Any, key, old: dict[str, Any], new: dict[str, Any]) -> aiohttp.web.StreamResponse:
        if new == old:
            return self._json(old)  # a no-op: no resourceVersion bump, no watch event
        new["metadata"]["resourceVersion"] = self._bump()
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].delete()
            await self._emit(res, "DELETED", new)
        else:
            self._store(key, new)
            await self._emit(res, "MODIFIED", new)
        return self._json(new)

    async def _patch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res, sub = request.resource, request.subresource
        if sub not in (None, "status") or (sub == "status" and res not in self._status_sub):
            raise kmock.KubernetesNotFoundError()
        key = self._key(res, request.namespace, request.name)
        async with self._lock:
            old = self._current(key)
            new = self._finish_update(res, sub, old, self._apply_patch(request, copy.deepcopy(old)))
            return await self._commit(res, key, old, new)

    async def _replace(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res, sub = request.resource, request.subresource
        if sub not in (None, "status") or not isinstance(request.data, dict):
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="bad PUT")
        key = self._key(res, request.namespace, request.name)
        async with self._lock:
            old = self._current(key)
            want_rv = (request.data.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise kmock.KubernetesError(status=409, reason="Conflict", message="the object has been modified")
            new = self._finish_update(res, sub, old, copy.deepcopy(request.data))
            return await self._commit(res, key, old, new)

    async def _delete(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        key = self._key(res, request.namespace, request.name)
        async with self._lock:
            old = self._current(key)
            if old["metadata"].get("deletionTimestamp"):
                return self._json(old)
            if old["metadata"].get("finalizers"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = _now()
                return await self._commit(res, key, old, new)
            self._objects[key].delete()
            old["metadata"]["resourceVersion"] = self._bump()
            await self._emit(res, "DELETED", old)
            return self._json(old)

    # -- reads -----------------------------------------------------------------------------------
    def _select(self, request: rendering.Request) -> list[dict[str, Any]]:
        reqs = parse_label_selector(request.params.get("labelSelector"))
        fsel = request.params.get("fieldSelector")
        out = []
        for (res, ns, name), obj in self._objects.items():
            if res != request.resource or obj.deleted:
                continue
            if request.namespace is not None and ns != request.namespace:
                continue
            raw = obj.raw
            if labels_match((raw.get("metadata") or {}).get("labels") or {}, reqs) and fields_match(raw, fsel):
                out.append(copy.deepcopy(raw))
        return out

    def _event_matches(self, request: rendering.Request, event: dict[str, Any]) -> bool:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        if request.name is not None and meta.get("name") != request.name:
            return False
        return labels_match(meta.get("labels") or {}, parse_label_selector(request.params.get("labelSelector"))) \
            and fields_match(obj, request.params.get("fieldSelector"))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        self._known(request.resource)
        async with self._lock:
            items = self._select(request)
            rv = str(self._rv)
        kind = self._kinds[request.resource]
        res = request.resource
        return {"apiVersion": f"{res.group}/{res.version}" if res.group else res.version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": rv}, "items": items}

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        if request.subresource not in (None, "status"):
            raise kmock.KubernetesNotFoundError()
        async with self._lock:
            return self._current(self._key(request.resource, request.namespace, request.name))

    async def _serve_watch(self, request: rendering.Request):
        yield b""  # send the headers at once, as a real server does
        self._known(request.resource)
        timeout = request.params.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout else None
        since = request.params.get("resourceVersion")
        bus = self._buses[request.resource]
        async with self._lock:
            mark = await bus.mark()
            if since and since.isdigit() and int(since) > 0:
                backlog = [copy.deepcopy(e) for rv, res, e in self._journal
                           if res == request.resource and rv > int(since) and self._event_matches(request, e)]
            else:
                backlog = [{"type": "ADDED", "object": o} for o in self._select(request)]
        for event in backlog:
            yield event
        stream = bus.stream(since=mark).__aiter__()
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(stream.__anext__(), remaining)
                except (asyncio.TimeoutError, StopAsyncIteration):
                    return
                if self._event_matches(request, event):
                    yield event
        finally:
            await bus.unmark(mark)

    # -- test-side helpers (call from the loop thread) -------------------------------------------
    def snapshot(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = kmock.resource(key)
        return [copy.deepcopy(o.raw) for (r, ns, _), o in list(self._objects.items())
                if r == res and not o.deleted and (namespace is None or ns == namespace)]


class EmulatorServer:
    """Runs a VlmopsEmulator on 127.0.0.1:<free port> in a background thread with its own loop."""

    def __init__(self, crd_docs: Iterable[dict[str, Any]] = (), namespaces: Iterable[str] = ("default",)):
        self.crd_docs = list(crd_docs)
        self.namespaces = list(namespaces)
        self.emulator: VlmopsEmulator | None = None
        self.port: int | None = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "EmulatorServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("emulator did not start")
        if self._error:
            raise self._error
        for ns in self.namespaces:
            self.seed("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - surfaced by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        emu = VlmopsEmulator()
        emu.declare_defaults(self.crd_docs)
        async with emu, kmock.Server(emu) as srv:
            self.emulator, self.port = emu, srv.port
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn, *args: Any) -> Any:
        """Run `fn(*args)` (sync) on the emulator's loop under its lock; return the result."""
        async def run():
            async with self.emulator._lock:
                return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def objects(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.snapshot, key, namespace)

    def seed(self, key: str, obj: dict[str, Any]) -> None:
        """Create an object directly (no HTTP), stamped like a create."""
        async def run():
            emu = self.emulator
            res = kmock.resource(key)
            o = copy.deepcopy(obj)
            meta = o.setdefault("metadata", {})
            async with emu._lock:
                meta.update(uid=str(uuid.uuid4()), resourceVersion=emu._bump(), creationTimestamp=_now(), generation=1)
                k = emu._key(res, meta.get("namespace"), meta["name"])
                emu._store(k, o)
                await emu._emit(res, "ADDED", o)
        asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def records(self) -> list[Record]:
        return list(self.emulator.records)

    def inject(self, method: str, path: str, status: int | None = None, delay: float = 0.0, times: int = 1) -> Fault:
        """Fail (or delay) the next `times` requests matching; returns the fault (its `hits` count)."""
        fault = Fault(method.upper(), path, status, delay, times)
        self.loop.call_soon_threadsafe(self.emulator.faults.append, fault)
        return fault


def kubeconfig(url: str, namespace: str = "default") -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                       "namespace": namespace}}],
    })

