"""Teacher-forced step skill: how often a model writes each line of a chain_math solution right,
given the right lines before it, by line position.

    python recipes/chain_math_step_skill.py runs/x/distill runs/x/rl runs/x/rl@5 \
        [--env-from runs/x/rl] [--horizons 4,6,8] [--n 100] [--json out.json]

Greedy pass@1 at horizon h multiplies h line hazards, so at n = 100 tasks a change of one line's
hazard is lost in the noise. Here every held-out task's oracle solution is run through the model
once (teacher forcing) and each line is judged on its own: a line is *right* when the model's
argmax reproduces every one of its tokens given the oracle prefix (the operands copied, the
operation, the result, and the first token of the line, i.e. continuing instead of stopping).
The ``####`` answer line is the *stop* position. Per position the script prints the share of
right lines with its Wilson 95 % interval, and the mean negative log-likelihood per token of the
whole oracle solution: hundreds of lines per position, so a change in per-step arithmetic (or in
the steps past the distilled horizon) shows up long before pass@1 moves. For every wrong line it
also reads the probability the model gave the right token at the line's first wrong token: whether
the slips are close calls that sampling reaches, or confident ones that it does not.

Targets are what ``horizon eval`` takes (a distillation dir, a run dir, ``RUN@STEP``, a model);
the held-out tasks are those of the first run target's env (or ``--env-from``), the same as
``horizon eval``'s at the same ``--n``. Everything runs in float32 on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def line_token_groups(solution: str, offsets: list[tuple[int, int]]) -> list[list[int]]:
    """For each line of ``solution``, the indices of the tokens whose character span overlaps it
    (``offsets``: a fast tokenizer's ``offset_mapping`` of ``solution``). A token holding the
    newline and the next line's first character belongs to that next line: predicting it is the
    choice to go on. Empty lines get no group."""
    groups, start = [], 0
    for line in solution.split("\n"):
        end = start + len(line)
        if line:
            groups.append([i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a])
        start = end + 1
    return groups


def lines_right(predicted: list[int], target: list[int], groups: list[list[int]]) -> list[bool]:
    """Per line group, whether every token's prediction equals the target token
    (``predicted[i]``: the argmax at the position that predicts token ``i``)."""
    return [bool(g) and all(predicted[i] == target[i] for i in g) for g in groups]


def tally_positions(per_task: list[list[bool]]) -> dict[str, dict]:
    """``{position: {"n", "right", "rate", "ci"}}``: position ``"1"``.. for calculation lines and
    ``"stop"`` for each task's last (``####``) line."""
    from rl.curve_stats import wilson_interval

    counts: dict[str, list[int]] = {}
    for lines in per_task:
        for j, ok in enumerate(lines):
            key = "stop" if j == len(lines) - 1 else str(j + 1)
            cell = counts.setdefault(key, [0, 0])
            cell[0] += 1
            cell[1] += int(ok)
    order = sorted((k for k in counts if k != "stop"), key=int) + (["stop"] if "stop" in counts else [])
    return {k: {"n": counts[k][0], "right": counts[k][1], "rate": counts[k][1] / counts[k][0],
                "ci": list(wilson_interval(counts[k][1], counts[k][0]))} for k in order}


def first_miss_probs(logp_tv, predicted: list[int], target: list[int], groups: list[list[int]]) -> list:
    """Per line group, ``None`` when the line is right, else the probability the model gave the
    target token at the line's first mispredicted token: how reachable the right line is by
    sampling at T = 1 (a group of 8 samples holds it about 1 - (1 - p)^8 of the time)."""
    out = []
    for g in groups:
        miss = next((i for i in g if predicted[i] != target[i]), None)
        out.append(None if miss is None else float(logp_tv[miss, target[miss]].exp()))
    return out


def tally_misses(per_task: list[list]) -> dict[str, dict]:
    """``{position: {"misses", "p_right_median", "share_p_ge": {0.05, 0.125, 0.25}}}`` over the
    wrong lines of ``per_task`` (from ``first_miss_probs``), positions as in ``tally_positions``."""
    import statistics

    by_pos: dict[str, list[float]] = {}
    for lines in per_task:
        for j, p in enumerate(lines):
            if p is not None:
                by_pos.setdefault("stop" if j == len(lines) - 1 else str(j + 1), []).append(p)
    by_pos["all"] = [p for ps in list(by_pos.values()) for p in ps]
    return {k: {"misses": len(ps), "p_right_median": statistics.median(ps) if ps else None,
                "share_p_ge": {str(t): (sum(p >= t for p in ps) / len(ps) if ps else None) for t in (0.05, 0.125, 0.25)}}
            for k, ps in by_pos.items()}


def score_policy(policy, tasks: list, batch_size: int = 16) -> dict:
    """Teacher-forced line judgements and the oracle's mean NLL per token for ``tasks``.

    Returns ``{"positions": tally_positions(...), "by_horizon": {h: tally_positions(...)},
    "misses": tally_misses(...), "nll_per_token": float, "tasks": int}``: ``positions`` pools every
    task, ``by_horizon`` splits them by their number of operations, ``misses`` says how likely the
    right token was where a line went wrong.
    """
    import torch

    from envs.chain_math import oracle_solution
    from rl.rollout.chat import render_prompt

    tok, model = policy.tokenizer, policy.model
    model.eval()
    per_task, miss_probs, horizons, nll_sum, nll_tokens = [], [], [], 0.0, 0
    for b in range(0, len(tasks), batch_size):
        rows = []
        for task in tasks[b:b + batch_size]:
            solution = oracle_solution(task)
            enc = tok(solution, add_special_tokens=False, return_offsets_mapping=True)
            prompt = render_prompt(tok, task.messages)
            rows.append((prompt, enc["input_ids"], line_token_groups(solution, enc["offset_mapping"])))
            horizons.append(len(task.meta["ops"]))
        width = max(len(p) + len(c) for p, c, _ in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids_bt = torch.full((len(rows), width), pad, dtype=torch.long)
        mask_bt = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (p, c, _) in enumerate(rows):
            ids_bt[r, :len(p) + len(c)] = torch.tensor(p + c)
            mask_bt[r, :len(p) + len(c)] = 1
        with torch.no_grad():
            logits_btv = model(input_ids=ids_bt, attention_mask=mask_bt).logits.float()
        for r, (p, c, groups) in enumerate(rows):
            at = torch.arange(len(p) - 1, len(p) + len(c) - 1)  # the positions that predict c
            logp_tv = torch.log_softmax(logits_btv[r, at], dim=-1)
            target = torch.tensor(c)
            nll_sum -= float(logp_tv.gather(1, target[:, None]).sum())
            nll_tokens += len(c)
            predicted = logp_tv.argmax(-1).tolist()
            per_task.append(lines_right(predicted, c, groups))
            miss_probs.append(first_miss_probs(logp_tv, predicted, c, groups))
    by_horizon = {h: tally_positions([t for t, th in zip(per_task, horizons) if th == h]) for h in sorted(set(horizons))}
    return {"positions": tally_positions(per_task), "by_horizon": by_horizon, "misses": tally_misses(miss_probs),
            "nll_per_token": nll_sum / max(1, nll_tokens), "tasks": len(tasks)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="distillation dirs, run dirs, RUN@STEP, model dirs or names")
    parser.add_argument("--env-from", default="", help="a run dir whose env gives the tasks (default: the first run target)")
    parser.add_argument("--horizons", default="4,6,8", help="comma-separated horizons of the held-out tasks")
    parser.add_argument("--n", type=int, default=100, help="held-out tasks per horizon")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args(argv)

    from rl.config import EvalConfig
    from rl.errors import ConfigError
    from rl.eval_job import env_of_first_run, resolve_target
    from rl.evaluate import eval_tasks
    from rl.models import load_policy
    from rl.trainer.run_eval import load_run_policy

    targets = [resolve_target(t) for t in args.targets]
    found = env_of_first_run([resolve_target(args.env_from)] if args.env_from else targets)
    if found is None:
        raise ConfigError("chain_math_step_skill: no run target to take the env from; pass --env-from RUN_DIR")
    env = found[0]
    if env.name != "chain_math":
        raise ConfigError(f"chain_math_step_skill: the run's env is {env.name!r}; this script scores chain_math only")
    horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    tasks = [t for ts in eval_tasks(env, EvalConfig(horizons=horizons, tasks_per_horizon=args.n)).values() for t in ts]

    results = {}
    for target in targets:
        if target.kind == "run":
            policy = load_run_policy(target.path, target.step, device="cpu")[0]
        else:
            policy = load_policy(target.path, lora=None, dtype="float32", device="cpu", trainable=False)
        results[target.label] = res = score_policy(policy, tasks)
        print(f"{target.label}  nll/token {res['nll_per_token']:.4f}", flush=True)
        for name, cells in [("all", res["positions"]), *((f"h={h}", c) for h, c in res["by_horizon"].items())]:
            print(f"  {name:>5}  " + "  ".join(f"{k}: {c['rate']:.2f} [{c['ci'][0]:.2f},{c['ci'][1]:.2f}]"
                                             for k, c in cells.items()), flush=True)
        print("  p(right token) at the first wrong token, median [share >= .05 / .125 / .25]:  " + "  ".join(
            f"{k}: {m['p_right_median']:.3f} [{'/'.join(f'{v:.2f}' for v in m['share_p_ge'].values())}] n={m['misses']}"
            for k, m in res["misses"].items() if m["misses"]), flush=True)
    if args.json:
        from rl.run.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps({"horizons": horizons, "n": args.n, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
