"""Shared fixtures: the tiny random model (built once per machine, cached) and scripted parts."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def tiny_path():
    from rl.models import resolve_model_path

    return resolve_model_path("tiny-random")


@pytest.fixture(scope="session")
def tokenizer(tiny_path):
    from rl.models import load_tokenizer

    return load_tokenizer(str(tiny_path))


@pytest.fixture()
def tiny_fp32(tiny_path):
    """tiny-random without LoRA, float32 (no autocast): exact comparisons."""
    from rl.models import load_policy

    return load_policy(str(tiny_path), lora=None, dtype="float32", device="cpu")


@pytest.fixture()
def tiny_lora(tiny_path):
    from rl.config import LoraConfig
    from rl.models import load_policy

    return load_policy(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu")
