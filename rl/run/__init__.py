"""Run-directory plumbing: atomic I/O, metrics and rollout files, checkpoints, plots, progress, fault points."""
