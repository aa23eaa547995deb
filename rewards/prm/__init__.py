"""Process reward models (PRMs): step labels, the model, its training, evaluation and use.

- ``labeling``: Math-Shepherd Monte Carlo step labels from a rollout engine, TRL's stepwise
  PRM rows and a ``datasets.Dataset`` of them.
- ``model``: ``ProcessRewardModel`` (causal-LM trunk + 2-way head read at each step's
  newline token), encoding, scoring, save / ``load_prm``.
- ``train``: ``train_prm``, a small hand-written loop (TRL 1.16 has no ``PRMTrainer``).
- ``metrics``: step AUC, AUC up to the first error, first-error accuracy, false alarms,
  calibration plot, and two baseline scorers (position, own-arithmetic check).
- ``search``: score aggregation, best-of-N, majority vote, step-level beam search.

Submodules import torch / transformers lazily where they can; import the one you need.
"""
