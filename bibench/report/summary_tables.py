"""The paper's two summary tables (Table 2: accuracy tracks, Table 3: efficiency tracks) from
results/tracks.parquet, with the best and worst algorithm of each row marked."""

from __future__ import annotations

import json

import pandas as pd

from bibench.metrics.tracks import best_and_worst

ACCURACY_TRACKS = ("learning_task", "neural_architecture", "corruption_robustness")
EFFICIENCY_TRACKS = ("training_consumption", "theoretical_complexity", "hardware_inference")
TRACK_TITLES = {
    "learning_task": "Learning task (%)", "neural_architecture": "Neural architecture (%)",
    "corruption_robustness": "Corruption robustness (%)",
    "training_consumption": "Training consumption (%)",
    "theoretical_complexity": "Theoretical complexity (x)",
    "hardware_inference": "Hardware inference (x)",
}


def summary_table(tracks: pd.DataFrame, track_names: tuple[str, ...]) -> dict:
    """Rows (track, metric) x columns (algorithms) with best/worst flags, for the template."""
    algorithms = sorted(tracks["algorithm"].unique())
    rows = []
    for track in track_names:
        part = tracks[tracks["track"] == track]
        for metric in dict.fromkeys(part["metric"]):  # keep first-seen order
            cells = part[part["metric"] == metric].set_index("algorithm")
            values = {a: float(cells["value"].get(a, float("nan"))) for a in algorithms}
            chance = {a for a in algorithms if json.loads(cells["at_chance"].get(a, "[]"))}
            # a value built on cells at chance ranks noise: it is never marked best or worst
            best, worst = best_and_worst({a: v for a, v in values.items() if a not in chance})
            rows.append({
                "track": TRACK_TITLES[track], "metric": metric,
                "cells": [{"value": values[a], "best": a in best, "worst": a in worst,
                           "status": cells["status"].get(a, "not measured"),
                           "at_chance": a in chance,
                           "note": cells["note"].get(a, "")} for a in algorithms],
            })
    return {"algorithms": algorithms, "rows": rows}
