"""Plays the parts of the cluster the emulator lacks: the Job and PyTorchJob controllers and the
kubelet. The tests mark a child succeeded/failed the way Kubernetes would show it: a Pod with our
labels whose terminated container carries the job's {"vlmopsResult": ...} termination message,
then the child's status conditions (through the status subresource)."""
from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from kubernetes import client

from operator_harness import REPO
from vlmops.builders.training_stage import trainjob_pod_patch

GROUP, VERSION = "vlmops.dev", "v1alpha1"
PLURALS = {"BalancedCorpus": "balancedcorpora", "PackedDataset": "packeddatasets",
           "VLMTrainingStage": "vlmtrainingstages", "EvalSuite": "evalsuites", "VLMRLStage": "vlmrlstages"}
DONE = {"BalancedCorpus": "Ready", "PackedDataset": "Ready", "VLMTrainingStage": "Succeeded", "EvalSuite": "Succeeded",
        "VLMRLStage": "Succeeded"}
MERGE = "application/merge-patch+json"
NOW = "2026-11-27T00:00:00Z"


def example_docs(namespace: str) -> list[dict[str, Any]]:
    docs = []
    for f in sorted((REPO / "examples" / "llava-ov-1.5").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                d["metadata"]["namespace"] = namespace
                docs.append(d)
    return docs


def result_for(kind: str, cr_name: str, step: str, index: int = 0) -> dict[str, Any]:
    """A realistic result JSON for one step of one CR (the jobs' contract)."""
    if kind == "BalancedCorpus":
        if step == "retrieve":
            return {"stats": {"shard": index, "queries": 332000, "concepts": 500000}}
        return {"stats": {"inputSamples": 400_000_000, "selectedSamples": 85_000_000, "threshold": 20000,
                          "before": {"conceptsCovered": 480000, "entropyBits": 12.1, "gini": 0.83},
                          "after": {"conceptsCovered": 480000, "entropyBits": 16.9, "gini": 0.41}},
                "output": {"uri": f"s3://vlm-data/{cr_name}/manifest.parquet", "digest": "sha256:ab12"}}
    if kind == "PackedDataset":
        if step != "finalize":
            return {"stats": {"shard": index, "step": step}}
        return {"stats": {"samples": 1_000_000, "sequences": 240_000, "lowerBoundSequences": 238_000,
                          "compressionRatio": 4.17, "packingEfficiency": 0.987, "tokens": 1_940_000_000,
                          "paddingTokens": 25_000_000, "droppedTooLong": 12},
                "output": {"uri": f"s3://vlm-data/{cr_name}/", "manifest": f"s3://vlm-data/{cr_name}/.nv-meta/",
                           "digest": "sha256:cd34"}}
    if kind == "VLMTrainingStage":
        return {"progress": {"step": 1000, "totalSteps": 1000, "tokensPerSecond": 51234.5, "mfu": 0.41},
                "checkpoint": {"latest": f"s3://vlm-ckpt/{cr_name}/iter_0001000/", "step": 1000},
                "output": {"uri": f"s3://vlm-ckpt/{cr_name}/"}, "hf": f"s3://vlm-ckpt/{cr_name}/hf/"}
    if kind == "EvalSuite":
        return {"results": [{"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.554},
                            {"task": "mmbench_en_dev", "metric": "gpt_eval_score", "value": 84.1},
                            {"task": "docvqa_val", "metric": "anls", "value": 0.95},
                            {"task": "chartqa", "metric": "relaxed_overall", "value": 0.865}],
                "lmmsEvalVersion": "0.7.3", "partial": False, "output": {"uri": f"s3://vlm-eval/{cr_name}/"}}
    if kind == "VLMRLStage":
        if step == "select":
            return {"select": {"shard": index, "prompts": 25000, "samples": 200000}}
        if step == "merge":
            return {"selection": {"uri": f"s3://vlm-ckpt/{cr_name}/output/selection", "prompts": 400000, "selected": 67000,
                                  "verdicts": {"kept": 67000, "alwaysCorrect": 300000, "neverCorrect": 33000}}}
        return {"progress": {"step": 2094, "totalSteps": 2094, "phase": "chain-of-thought", "rewardMean": 0.71},
                "checkpoint": {"latest": f"s3://vlm-ckpt/{cr_name}/chain-of-thought/final", "step": 2094},
                "output": {"uri": f"s3://vlm-ckpt/{cr_name}/output/"}, "hf": f"s3://vlm-ckpt/{cr_name}/output/hf",
                "curve": [{"step": 1, "reward": 0.42}, {"step": 2094, "reward": 0.71}]}
    raise KeyError(kind)


class Cluster:
    def __init__(self, api_client: client.ApiClient, namespace: str):
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- CRs ------------------------------------------------------------------------------------
    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURALS[obj["kind"]], obj)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURALS[kind], name)

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        for c in (self.get(kind, name).get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return c
        return {}

    def all_done(self) -> bool:
        """Every CR of the namespace is Ready/Succeeded (one list per kind)."""
        for kind, plural in PLURALS.items():
            for obj in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural)["items"]:
                conds = (obj.get("status") or {}).get("conditions") or []
                if not any(c["type"] == DONE[kind] and c["status"] == "True" for c in conds):
                    return False
        return True

    def is_done(self, kind: str, name: str) -> bool:
        return self.condition(kind, name, DONE[kind]).get("status") == "True"

    # -- children -------------------------------------------------------------------------------
    def children(self) -> list[dict[str, Any]]:
        jobs = json.loads(self.batch.list_namespaced_job(self.ns, _preload_content=False).data)["items"]
        pjs = self.custom.list_namespaced_custom_object("kubeflow.org", "v1", self.ns, "pytorchjobs")["items"]
        tjs = self.custom.list_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", self.ns, "trainjobs")["items"]
        return jobs + pjs + tjs

    def _pod(self, name: str, labels: dict[str, str], container: str, message: str, exit_code: int,
             index: int | None, image_id: str = "") -> None:
        ann = {"batch.kubernetes.io/job-completion-index": str(index)} if index is not None else {}
        self.core.create_namespaced_pod(self.ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": ann},
            "spec": {"containers": [{"name": container, "image": "x"}], "restartPolicy": "Never"}})
        state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                "message": message, "startedAt": NOW, "finishedAt": NOW}}
        self.core.patch_namespaced_pod_status(name, self.ns, {"status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": container, "ready": False, "restartCount": 0, "image": "x",
                                   "imageID": image_id, "state": state}]}}, _content_type=MERGE)

    def finish(self, child: dict[str, Any], ok: bool = True, result: dict[str, Any] | None = None,
               error: str = "reading s3://x/\nerror: source.uri: no parquet files under s3://x/\n",
               image_id: str = "") -> None:
        """Play the controller + kubelet: pods with termination messages, then child status."""
        meta = child["metadata"]
        labels = meta["labels"]
        kind, cr, step = labels["vlmops.dev/kind"], labels["vlmops.dev/name"], labels["vlmops.dev/step"]
        if child["kind"] == "Job":
            tmpl = child["spec"]["template"]
            completions = child["spec"].get("completions") or 1
            indexed = child["spec"].get("completionMode") == "Indexed"
            for i in range(min(completions, 2)):
                res = result if result is not None else result_for(kind, cr, step, i)
                msg = json.dumps({"vlmopsResult": res}, separators=(",", ":")) if ok else error
                pod_labels = {**tmpl["metadata"]["labels"], "job-name": meta["name"]}
                self._pod(f"{meta['name']}-{i}-abcde", pod_labels, tmpl["spec"]["containers"][0]["name"], msg,
                          0 if ok else 2, i if indexed else None, image_id)
            cond = ({"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}) if ok \
                else ({"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                       "message": "Job has reached the specified backoff limit"},
                      {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                       "message": "Job has reached the specified backoff limit"})
            status = {"startTime": NOW, "conditions": [dict(c, lastTransitionTime=NOW) for c in cond],
                      ("succeeded" if ok else "failed"): completions if ok else 1, "active": 0}
            if ok:
                status["completionTime"] = NOW
            self.batch.patch_namespaced_job_status(meta["name"], self.ns, {"status": status}, _content_type=MERGE)
        elif child["kind"] == "TrainJob":  # pods: the JobSet's `node` job, labels from the runtime patch
            res = result if result is not None else result_for(kind, cr, step)
            msg = json.dumps({"vlmopsResult": res}, separators=(",", ":")) if ok else error
            pod_labels = {**trainjob_pod_patch(child)["metadata"]["labels"],
                          "jobset.sigs.k8s.io/jobset-name": meta["name"],
                          "jobset.sigs.k8s.io/replicatedjob-name": "node", "batch.kubernetes.io/job-completion-index": "0"}
            self._pod(f"{meta['name']}-node-0-0-abcde", pod_labels, "node", msg, 0 if ok else 1, 0, image_id)
            final = {"type": "Complete", "status": "True", "reason": "JobsCompleted",
                     "message": "jobset completed successfully"} if ok else \
                {"type": "Failed", "status": "True", "reason": "JobsFailed",
                 "message": f"jobset failed with job {meta['name']}-node-0"}
            self.custom.patch_namespaced_custom_object_status(
                "trainer.kubeflow.org", "v1alpha1", self.ns, "trainjobs", meta["name"], {"status": {
                    "conditions": [dict(final, lastTransitionTime=NOW)],
                    "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": int(ok), "failed": int(not ok),
                                    "suspended": 0}]}})
        else:  # PyTorchJob: pods come from the Master replica template
            master = child["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
            res = result if result is not None else result_for(kind, cr, step)
            msg = json.dumps({"vlmopsResult": res}, separators=(",", ":")) if ok else error
            pod_labels = {**master["metadata"]["labels"], "training.kubeflow.org/job-name": meta["name"],
                          "training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0"}
            self._pod(f"{meta['name']}-master-0", pod_labels, "pytorch", msg, 0 if ok else 1, None, image_id)
            final = {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded",
                     "message": f"PyTorchJob {meta['name']} is successfully completed."} if ok else \
                {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                 "message": f"PyTorchJob {meta['name']} has failed because 1 Master replica(s) failed."}
            conds = [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated"},
                     {"type": "Running", "status": "False", "reason": "PyTorchJobRunning"}, final]
            self.custom.patch_namespaced_custom_object_status("kubeflow.org", "v1", self.ns, "pytorchjobs",
                                                              meta["name"], {"status": {
                                                                  "conditions": [dict(c, lastTransitionTime=NOW)
                                                                                 for c in conds],
                                                                  "startTime": NOW, "completionTime": NOW}})

    def events(self) -> list[dict[str, Any]]:
        return json.loads(self.core.list_namespaced_event(self.ns, _preload_content=False).data)["items"]


def deep(d: dict[str, Any], path: str) -> Any:
    for p in path.split("."):
        d = (d or {}).get(p)
    return copy.deepcopy(d)

