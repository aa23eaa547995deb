"""horizon's distillation against a plain TRL SFT script: equal minutes, the same traces.

    python recipes/bench/distill_vs_trl.py                        # 5 min of SFT each, ~14 min in all
    python recipes/bench/distill_vs_trl.py --minutes 0.1 --model tiny-random --tasks 32   # smoke run

1. ``traces``: oracle traces of chain_math h 1-4 (``--preset``'s distill env: ``hard`` is the
   task of FACTS.md's reference numbers), written once by ``horizon distill``.
2. ``horizon``: the SFT stage of ``horizon distill`` with the preset's settings (LoRA r=16, batch 8,
   lr 4e-4, cosine), its schedule sized to the budget from the first run's pace.
3. ``trl``: a stand-alone ``trl.SFTTrainer`` as a TRL user writes it, with FACTS.md's reference
   settings (LoRA r=16 all-linear, lr 2e-4 constant after 5 warm-up steps, batch 16,
   completion-only loss, bf16 autocast where the CPU has it), on the same dataset.
4. Both merged models scored by ``horizon eval`` on the same held-out tasks.

Both training loops stop at ``--minutes`` of their own clock (model loading and saving are not
counted). Printed: steps, traces seen and greedy pass@1 per horizon with Wilson 95 % intervals,
side by side; ``distill_vs_trl.json`` goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes"))


def plain_trl_sft(model_name: str, traces_dir: Path, out: Path, budget_s: float, seed: int) -> dict:
    """The reference: TRL's SFTTrainer with its own defaults where FACTS.md's script used them."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rl.distill.pipeline import time_budget_callback
    from rl.models import pick_autocast_dtype, resolve_model_path

    path = resolve_model_path(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    bf16 = pick_autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16
    dataset = load_from_disk(str(traces_dir)).select_columns(["prompt", "completion"])
    args = SFTConfig(output_dir=str(out / "sft"), max_steps=100_000, per_device_train_batch_size=16,
                     learning_rate=2e-4, lr_scheduler_type="constant_with_warmup", warmup_steps=5,
                     completion_only_loss=True, bf16=bf16, use_cpu=True, logging_steps=5, save_strategy="no",
                     report_to=[], seed=seed, data_seed=seed, disable_tqdm=True, dataloader_num_workers=0)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora,
                         train_dataset=dataset, callbacks=[time_budget_callback(budget_s)])
    output = trainer.train()
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    return {"model": str(out / "model"), "steps": trainer.state.global_step, "batch_size": 16,
            "train_s": output.metrics.get("train_runtime")}


def main(argv: list[str]) -> int:
    import long_horizon

    from rl.config import load_config
    from rl.distill.pipeline import distill
    from rl.eval_job import EvalJobConfig, run_eval_job

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="SFT loop minutes for each side")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--preset", default="hard", choices=sorted(long_horizon.PRESETS))
    p.add_argument("--tasks", type=int, default=1200, help="oracle traces (more than either side uses)")
    p.add_argument("--eval_tasks", type=int, default=100, help="held-out tasks per horizon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_distill_vs_trl")
    a = p.parse_args(argv)
    out = Path(a.out)
    preset = load_config(long_horizon.LongHorizonConfig, long_horizon.PRESETS[a.preset], [])
    budget_s = a.minutes * 60
    # horizon's side: the preset's SFT (batch 8, lr 4e-4, cosine), its cosine sized to the budget at
    # the preset's measured pace; the time budget ends it either way
    pace_s = 6.0  # s per step of 8 measured on 2 AVX512-bf16 cores; a slower machine ends on the budget
    steps = max(2, round(budget_s / pace_s))
    ours = replace(preset.distill, model=a.model, output_dir=str(out / "horizon"), seed=a.seed,
                   num_tasks=a.tasks, stages=["traces", "sft"],
                   sft=replace(preset.distill.sft, max_steps=steps, max_train_s=budget_s))
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    summary = json.loads((distill(ours, resume=True) / "summary.json").read_text())["sft"]
    results["horizon"] = {"model": summary["model"], "steps": summary["steps"], "batch_size": ours.sft.batch_size,
                          "train_s": summary["train_s"], "wall_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    if (out / "trl" / "result.json").exists():
        results["trl"] = json.loads((out / "trl" / "result.json").read_text())
    else:
        results["trl"] = plain_trl_sft(a.model, out / "horizon" / "traces", out / "trl", budget_s, a.seed)
        results["trl"]["wall_s"] = time.perf_counter() - t0
        (out / "trl" / "result.json").write_text(json.dumps(results["trl"], indent=2))
    evaluation = replace(preset.eval, horizons=[1, 2, 3, 4, 6, 8], tasks_per_horizon=a.eval_tasks)
    job = EvalJobConfig(targets=[results[k]["model"] for k in ("horizon", "trl")], labels=["horizon", "trl"],
                        output_dir=str(out / "eval"), env=preset.rl.env, eval=evaluation)
    run_eval_job(job, resume=True)
    curves = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    print(f"\n{'':8} {'steps':>6} {'traces':>7} {'train_s':>8}   greedy pass@1 [95 % interval] per horizon")
    for name, r in results.items():
        c = curves[name]
        cells = "  ".join(f"h{h} {c['pass@1'][h]:.2f} [{c['pass@1_ci'][h][0]:.2f},{c['pass@1_ci'][h][1]:.2f}]"
                          for h in c["pass@1"])
        print(f"{name:8} {r['steps']:>6} {r['steps'] * r['batch_size']:>7} {r['train_s'] or 0:>8.0f}   {cells}")
        r["pass@1"], r["pass@1_ci"] = c["pass@1"], c["pass@1_ci"]
    (out / "distill_vs_trl.json").write_text(json.dumps({"minutes": a.minutes, "preset": a.preset,
                                                          "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
