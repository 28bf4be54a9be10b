"""The contract between the operator (`vlmops`) and the jobs (`vlmops_jobs`): the only package both import.

What lives here is what one side writes and the other reads, so it is defined once:
- `api`: the API group and version the CRs and labels use;
- `result`: the result line a job prints last (and writes as its termination message), exit codes;
- `labels`: the labels the operator puts on every child and pod, which the runner and results read;
- `layouts`: each job's output layout (paths under its `--output`), for the jobs that write them and
  the readers (the next job, the operator's progress mirror, the local report);
- `stage_checks`, `model_shapes`: the training stage's rules and the preset shapes they check, run by
  the trainer at start and by admission (pydantic, CEL), so admission is never weaker than the job;
- `thresholds`: how EvalSuite thresholds turn results into passed/failing (operator status, eval job).

Pure Python: no third-party imports, so the operator image needs none of the jobs' libraries.
"""
