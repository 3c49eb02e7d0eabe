"""Training: the one loop every cell uses, and building / saving / loading a cell's model."""
