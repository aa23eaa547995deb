"""Print how a trained PRM ranks sampled solutions: the top few by min step score, beside the
correct ones, with each step's score and its exact label (chain_math).

    python recipes/inspect_prm.py --prm runs/prm_chain_math_exact/prm --tasks 12

Use it when best-of-N with a PRM disappoints: it shows what the PRM prefers (e.g. short
solutions that skip an operation).
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prm", default="runs/prm_chain_math/prm")
    parser.add_argument("--sampler", default="runs/distill_chain_math/model")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--n", type=int, default=16, help="samples per task")
    parser.add_argument("--min_horizon", type=int, default=2)
    parser.add_argument("--max_horizon", type=int, default=4)
    parser.add_argument("--engine", default="auto", choices=["auto", "vllm", "hf"])
    parser.add_argument("--seed", type=int, default=987_654, help="task stream (the PRM eval's held-out seed)")
    args = parser.parse_args(argv)
    from rewards.prm.labeling import answer_is_correct
    from rewards.prm.model import load_prm
    from rl.build import build_engine, build_task_source
    from rl.config import EnvConfig, RolloutConfig
    from rl.models import check_model_available, load_policy
    from rl.prm.pipeline import sample_solutions
    from rl.rollout.base import SamplingParams
    from rl.types import split_steps

    check_model_available(args.sampler)
    prm, prm_tokenizer = load_prm(args.prm, "auto")  # fails on a bad path before sampling
    policy = load_policy(args.sampler, lora=None, trainable=False)
    engine = build_engine(RolloutConfig(engine=args.engine, max_new_tokens=96), policy, seed=0)
    params = SamplingParams(max_new_tokens=96, temperature=1.0, seed=0,
                            stop_token_ids=(policy.tokenizer.eos_token_id,))
    env = EnvConfig(name="chain_math", options={"min_horizon": args.min_horizon, "max_horizon": args.max_horizon})
    exact_labels = env.spec.step_labels
    tasks = build_task_source(env, args.seed).sample(args.tasks)
    try:
        texts = sample_solutions(engine, policy.tokenizer, tasks, args.n, params)
    finally:
        engine.close()
    for task, samples in zip(tasks, texts):
        steps = [split_steps(x, env.spec.step_separator) or ["(no step)"] for x in samples]
        scores = prm.step_scores(prm_tokenizer, [task.messages] * len(samples), steps)
        correct = [answer_is_correct(task, x) for x in samples]
        ranked = sorted(range(len(samples)), key=lambda i: -min(scores[i]))
        print(f"\n{task.messages[-1]['content'].splitlines()[0]}  (answer {task.answer}, "
              f"{sum(correct)}/{len(samples)} samples right)")
        shown = ranked[:3] + [i for i in range(len(samples)) if correct[i] and i not in ranked[:3]][:1]
        for i in shown:
            marks = "".join("+" if ok else "-" for ok in exact_labels(task, steps[i]))
            print(f"  #{ranked.index(i) + 1:<2} right={correct[i]!s:<5} min={min(scores[i]):.2f} "
                  f"steps={[round(s, 2) for s in scores[i]]} exact={marks} {steps[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
