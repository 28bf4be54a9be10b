"""A VLMRLStage's `--output` (the CR's `output.uri`): what the RL job's steps write there.

    select/shards-<N>/shard-<i>.jsonl    select shard i of N: one line per prompt (its N rewards, stats)
    select/shards-<N>/shard-<i>.json     shard commit marker (parameters, policy, file digest; last)
    selection/selected.jsonl             the kept prompts (the prompt row + its statistics)
    selection/prompts.jsonl              every prompt's statistics and the rule's verdict
    selection/stats.json                 counts by verdict, Pass@1 / Pass@N / reward means
    selection-manifest.json              the selection's commit (policy, prompts, rule; written last)
    progress.json                        rewritten while GRPO runs (step, reward, KL, length, tokens/s)
    hf/                                  the final policy in the release's HF format
    manifest.json                        the stage's commit, written last (`MANIFEST`)

The checkpoint prefix (`checkpoint.uri`) holds, per phase, `<phase>/checkpoint-<step>/` (TRL's
trainer checkpoint), `<phase>/latest.json` (written after the checkpoint it names) and
`<phase>/final/` with `final/phase.json` written last (the phase's weights, the next phase's start).
"""
from . import MANIFEST as MANIFEST  # the stage's commit marker, the same name every job uses
from .train import HF_CONFIG as HF_CONFIG, HF_EXPORT as HF_EXPORT, PROGRESS as PROGRESS  # same names as a stage

SELECTION_DIR = "selection"
SELECTED = f"{SELECTION_DIR}/selected.jsonl"
PROMPT_STATS = f"{SELECTION_DIR}/prompts.jsonl"
SELECTION_STATS = f"{SELECTION_DIR}/stats.json"
SELECTION_MANIFEST = "selection-manifest.json"

# Fields of progress.json (beyond the training stage's) the RL stage reports.
PROGRESS_FIELDS = ("step", "totalSteps", "phase", "rewardMean", "rewardStd", "kl", "completionLength",
                   "tokensPerSecond", "loss")

# In the checkpoint prefix, per phase
LATEST = "latest.json"
FINAL = "final"
PHASE_DONE = "phase.json"


def select_dir(shards: int) -> str:
    return f"select/shards-{shards:05d}"  # keyed by the shard count: shards of different counts never mix


def select_shard(shard: int, shards: int) -> dict[str, str]:
    """Files of select shard `shard` of `shards`: its per-prompt lines and its marker (the commit, last)."""
    base = f"{select_dir(shards)}/shard-{shard:05d}"
    return {"prompts": f"{base}.jsonl", "marker": f"{base}.json"}


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"  # TRL's (transformers Trainer's) own directory name
