"""Policy-gradient training, every preset (``horizon train``): config, loop, credit signals, update."""
