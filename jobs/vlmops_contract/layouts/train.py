"""A training stage's `--output` (the stage's `status.output.uri`)."""

PROGRESS = "progress.json"  # rank 0, rewritten while training: step, loss, tokens/s, checkpoint
HF_EXPORT = "hf"            # the Hugging Face export (a directory), written before the manifest
# Fields of progress.json the operator mirrors into status.progress.
PROGRESS_FIELDS = ("step", "totalSteps", "tokensPerSecond", "samplesPerSecond", "mfu", "loss")
# In HF_EXPORT: what makes a directory a Hugging Face checkpoint (the eval job checks for it).
HF_CONFIG = "config.json"
