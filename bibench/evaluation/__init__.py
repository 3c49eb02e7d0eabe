"""Evaluation: predictions, the paper's task metrics, and the image corruptions."""
