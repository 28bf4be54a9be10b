"""An EvalSuite's `--output` (the EvalSuite's `status.output.uri`).

```
results.json                     RESULTS: normalised results (partial until the manifest commits them)
lmms-eval/<task>/results.json    RAW_RESULTS in raw_task_dir(task): lmms-eval's dict, without samples
lmms-eval/<task>/samples.jsonl   RAW_SAMPLES: per-sample docs/responses/scores (unless --no-log-samples)
lmms-eval/<task>/...             whatever else the task's aggregation wrote (submission files)
lmms-eval/<task>/done.json       TASK_DONE, the task's commit marker (last of its files): parameters, model
                                 digest, its files' digests; a restarted eval reuses a task that has one
manifest.json                    MANIFEST, last
```
"""
from . import MANIFEST, join

__all__ = ["MANIFEST", "RAW_DIR", "RAW_RESULTS", "RAW_SAMPLES", "RESULTS", "TASK_DONE", "raw_task_dir"]

RESULTS = "results.json"
RAW_DIR = "lmms-eval"
RAW_RESULTS = "results.json"
RAW_SAMPLES = "samples.jsonl"
TASK_DONE = "done.json"


def raw_task_dir(task: str) -> str:
    """`lmms-eval/<task>`: one task's raw lmms-eval output, relative to the output."""
    return join(RAW_DIR, task)
