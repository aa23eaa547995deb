"""The PRM job (``horizon prm``): sample -> Monte Carlo step labels -> train a PRM -> evaluate it."""
