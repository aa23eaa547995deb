import pytest

from rl.config import load_config, parse_overrides
from rl.trainer.config import TrainConfig
from rl.errors import ConfigError


def test_overrides_parse_values_as_yaml():
    assert parse_overrides(["--max_steps", "3", "--rollout.temperature=0.7", "--progress"]) == [
        ("max_steps", 3), ("rollout.temperature", 0.7), ("progress", True)]


def test_yaml_plus_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny-random\nrollout:\n  group_size: 4\noptim:\n  lr: 1e-5\n")
    cfg = load_config(TrainConfig, path, ["--rollout.group_size", "6", "--max_steps", "2"])
    assert cfg.rollout.group_size == 6 and cfg.max_steps == 2 and cfg.optim.lr == 1e-5


@pytest.mark.parametrize("override, message", [
    (["--max_step", "3"], "unknown config key 'max_step' — did you mean 'max_steps'"),
    (["--rollout.group_sise", "3"], "did you mean 'rollout.group_size'"),
    (["--rollout.group_size", "many"], "'rollout.group_size': expected an integer"),
    (["--rollout.group_size", "1"], "'rollout.group_size': must be >= 2"),
    (["--rollout.engine", "tgi"], "'rollout.engine': 'tgi' is not one of"),
    (["--env.max_horizon", "65"], "'env.max_horizon': 65 must be in 1..64"),
    (["--env.max_horizn", "6"], "unknown config key 'env.max_horizn' — did you mean 'env.max_horizon'"),
    (["--env.timout_s", "6"], "did you mean 'env.timeout_s'"),
    (["--algorithm.clip_low", "1.5"], "'algorithm.clip_low'"),
    (["--lora", "3"], "'lora' must be a section"),
    (["--optim.optimizer", "lion"], "'optim.optimizer': 'lion' is not one of"),
    (["--optim.adam_betas", "[0.9]"], "'optim.adam_betas': expected 2 values"),
    (["--optim.adam_betas", "[0.9, 1.0]"], "'optim.adam_betas': give two numbers in"),
    (["--optim.momentum", "1.0"], "'optim.momentum': must be in"),
    (["--env.name", "reasoning_gym", "--reward.outcome", "all_steps"], "'reward.outcome': 'all_steps' needs exact step labels"),
])
def test_bad_input_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", ".")):
        load_config(TrainConfig, None, override)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "nope.yaml")


def test_saved_config_loads_back(tmp_path):
    from rl.config import save_config

    cfg = load_config(TrainConfig, None, ["--seed", "7", "--env.mul_range", "[2, 3]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(TrainConfig, tmp_path / "config.yaml") == cfg


def test_recipe_config_is_valid():
    from pathlib import Path

    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "recipes/configs/grpo_chain_math.yaml")
    assert cfg.model == "smollm2-135m-instruct"


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optim_section_picks_the_optimizer_and_its_settings(tiny_lora, name):
    import torch

    from rl.trainer.loop import _optimizer

    cfg = load_config(TrainConfig, None, ["--optim.optimizer", name, "--optim.lr", "0.5", "--optim.momentum", "0.5",
                                           "--optim.adam_betas", "[0.8, 0.99]", "--optim.adam_eps", "1e-6"])
    optimizer, _, _ = _optimizer(tiny_lora, cfg, {})
    group = optimizer.param_groups[0]
    if name == "sgd":
        assert isinstance(optimizer, torch.optim.SGD) and group["momentum"] == 0.5
        # SGD's first step is -lr * grad: the step follows the gradient's size, unlike Adam's
        param = group["params"][0]
        param.grad = torch.full_like(param, 0.02)
        before = param.detach().clone()
        optimizer.step()
        assert torch.allclose(param.detach() - before, torch.full_like(param, -0.01))
    else:
        assert isinstance(optimizer, torch.optim.AdamW)
        assert group["betas"] == (0.8, 0.99) and group["eps"] == 1e-6
