"""The names of what a training run writes in its folder (no torch here: the pipeline's layout and the
`hubert` command read them without loading a model)."""

CHECKPOINTS = "checkpoints"  # OUT/checkpoints/update_0000300.pt, ... and best.pt
CHECKPOINT_PATTERN = "update_*.pt"
BEST = "best.pt"  # the lowest valid loss so far
TRAIN_LOG = "train_log.jsonl"  # one JSON record per log and per validation
