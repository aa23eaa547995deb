"""Offline distillation (``horizon distill``): teacher traces -> verifier filter -> SFT -> eval."""
