"""End-to-end: the whole chain on the tiny grid, rerun semantics, config validation."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from bibench.catalog import algorithm_sources
from bibench.io import SCHEMAS, read_table

pytestmark = pytest.mark.workflow

TINY = yaml.safe_load((Path(__file__).parent / "configs" / "tiny.yaml").read_text())


def _write_config(wf, name: str, config: dict) -> str:
    (wf.root / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def _variant(edit) -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config)
    return config


# --------------------------------------------------------------------------- the full chain


def test_chain_produces_every_cell_and_report(tiny_run):
    results = tiny_run.root / "results"
    metrics = read_table(results / "metrics.parquet", "metrics")
    # one row per cell and condition: clean + configured corruption severities
    per_task = {"mnist": 1 + 2, "digits": 1 + 1}
    for task, n_conditions in per_task.items():
        rows = metrics[metrics["task"] == task]
        assert len(rows) == n_conditions * len(TINY["algorithms"]) * len(TINY["seeds"])
        assert set(rows["algorithm"]) == set(TINY["algorithms"])
    assert metrics["embedded"].all()
    assert (metrics["train_status"] == "ok").all()
    provenance = ["config_hash", "bibench_version", "device", "seed", "train_wall_seconds"]
    assert metrics[provenance].notna().all().all()
    fp32 = metrics[metrics["algorithm"] == "fp32"]
    assert (fp32["relative_to_fp32"] == 1.0).all()
    binarized = metrics[metrics["algorithm"] == "bnn"]
    assert (binarized["compression_ratio"] > 5).all() and (binarized["speedup_ratio"] > 5).all()
    assert (metrics["onnx_argmax_agreement"] >= TINY["export"]["min_argmax_agreement"]).all()
    # latency is measured once per (task, arch, algorithm), on the first seed's forms
    timed = metrics["seed"] == TINY["seeds"][0]
    assert (metrics.loc[timed, "latency_median_ms"] > 0).all()
    assert metrics.loc[~timed, "latency_median_ms"].isna().all()
    # deployable binarized cells report the binary engine, with its storage saving
    binarized = binarized[binarized["seed"] == TINY["seeds"][0]]
    assert set(binarized["latency_engine"]) == {"openvino_binary"}
    assert (binarized["latency_speedup_vs_fp32"] > 1).all()
    assert (binarized["storage_saving"] > 5).all()
    html = (results / "report.html").read_text()
    assert "Embedded offline data" in html and "data:image/png;base64," in html
    assert "bnn" in html and "CIFAR-10" in html
    assert "paper Table 2" in html and "paper Table 3" in html
    assert "Sensitivity to training settings" in html  # the figure of the grid
    assert "Hardware inference" in html
    assert "Deployability on the binary engine" in html


def test_report_opens_in_a_browser_with_every_figure_and_table(tiny_run):
    """Headless Chromium: no console error, every image decodes, the overview figure and every
    table are there, and nothing is fetched from elsewhere (one self-contained file)."""
    import re

    from browser import chromium, open_page

    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's 'chromium')")
    html_path = tiny_run.root / "results" / "report.html"
    html = html_path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html), "external resource"
    assert "<link" not in html
    view = open_page(html_path)
    assert view.console == [], view.console
    assert view.images and all(img["ok"] for img in view.images), view.images
    assert any(img["alt"].startswith("Overall metric of each track") for img in view.images)
    dom = view.dom
    assert 'id="overview-figure"' in dom and re.search(r'<ul id="findings">\s*<li>', dom)
    for table_id in ("accuracy-tracks", "efficiency-tracks", "deployability"):
        assert f'id="{table_id}"' in dom, table_id
    n_tasks = len(TINY["tasks"])
    assert dom.count('class="task-table"') == n_tasks
    assert dom.count('class="sortable cells-table"') == n_tasks
    assert dom.count('class="sortable raw-table"') == n_tasks
    assert dom.count('class="reference-table"') == 1 and dom.count('class="latency-table"') == 1
    # training curves per task, robustness per task, the sensitivity grid: figures
    alts = [img["alt"] for img in view.images]
    assert sum("training curves" in a for a in alts) == n_tasks
    assert sum("per corruption and severity" in a for a in alts) == n_tasks


def test_report_shows_seeds_paper_and_reference(tiny_run):
    html = (tiny_run.root / "results" / "report.html").read_text()
    assert "mean over 2 seeds ± the half-width of its 95% confidence interval" in html
    assert " ± " in html
    # the paper's number beside ours, from the row the task stands for
    assert "Table 7, row CIFAR10 ResNet20" in html and "paper 91.99" in html
    assert "embedded stand-in for CIFAR-10" in html
    # the tiny grid has one binarized algorithm: the findings say there is nothing to pair,
    # and the per-task tables carry the ranking and the interval columns
    assert "No two comparable binarized algorithms of the same task and architecture" in html
    assert "rank agreement (Spearman, 95% interval)" in html and "ranking (paired tests)" in html
    assert "reference (x over FP32)" in html and "ISA features" in html


def test_tracks_table_has_every_track_and_the_sensitivity_grid(tiny_run):
    tracks = read_table(tiny_run.root / "results" / "tracks.parquet", "tracks")
    bnn = tracks[tracks["algorithm"] == "bnn"].set_index("metric")
    assert {"OM_task", "OM_arch", "OM_robust", "OM_train", "OM_comp", "OM_infer"} <= set(bnn.index)
    for metric in ("OM_task", "OM_comp", "OM_infer"):
        assert bnn.loc[metric, "status"] == "ok" and bnn.loc[metric, "value"] > 0, metric
    # the grid feeds the training track; a tiny run may leave a zero spread, which must then
    # be named as the reason rather than reported as a number
    if bnn.loc["sensitivity", "status"] == "ok":
        assert bnn.loc["OM_train", "status"] == "ok" and bnn.loc["OM_train", "value"] > 0
    else:
        assert "zero spread" in bnn.loc["sensitivity", "excluded"]
    runs = list((tiny_run.root / "results" / "sensitivity").rglob("*.parquet"))
    grid = TINY["sensitivity"]
    assert len(runs) == len(grid["settings"]) * len(grid["seeds"]) * len(TINY["algorithms"])


def test_cells_at_chance_are_marked_and_left_out_of_robustness(tiny_run):
    """The tiny grid trains a few dozen steps: binarized cells stay at or near chance (within 5
    points of the most frequent class), and the noise gap of those at chance must not enter
    Eq. 4. Which ones are at chance depends on the CPU's rounding, so the test takes them from
    the table."""
    import json

    results = tiny_run.root / "results"
    metrics = read_table(results / "metrics.parquet", "metrics")
    clean = metrics[metrics["condition"] == "clean"].set_index(["task", "algorithm", "seed"])
    assert (clean["chance_value"] > 0.09).all() and (clean["chance_value"] < 0.2).all()
    assert (clean["at_chance"] == (clean["value"] <= clean["chance_value"] + 0.05)).all()
    at_chance = list(clean.index[clean["at_chance"]])
    assert at_chance, clean[["value", "chance_value"]]
    assert {algo for _, algo, _ in at_chance} == {"bnn"}, at_chance
    assert set(clean["convergence"]) <= {"converged", "not converged"}
    binarized = clean.xs("bnn", level="algorithm")
    assert (binarized["convergence"] == "not converged").all()  # one epoch
    tracks = read_table(results / "tracks.parquet", "tracks")
    bnn = tracks[tracks["algorithm"] == "bnn"].set_index("metric")
    corrupted = {t for t, spec in TINY["tasks"].items() if spec.get("corruptions")}
    for task, _, seed in at_chance:
        cell = f"{task}/resnet20/bnn/{seed}"
        assert cell in json.loads(bnn.loc[f"relative:{task}", "at_chance"])
        if task in corrupted:
            assert f"{cell} (at chance)" in json.loads(bnn.loc["OM_robust", "excluded"])
    assert "at chance left out" in bnn.loc["OM_robust", "note"]
    html = (results / "report.html").read_text()
    marks = re.findall(r'<span class="mark">([^<]*)</span>', html)
    assert any("at chance" in m for m in marks) and any("not converged" in m for m in marks)


def test_every_table_has_its_schema(tiny_run):
    results = tiny_run.root / "results"
    for name in ["train", "eval", "export", "latency", "complexity"]:
        paths = list(results.rglob(f"{name}.parquet"))
        assert paths, name
        for p in paths:
            read_table(p, name)  # raises on a schema mismatch
    read_table(results / "metrics.parquet", "metrics")
    read_table(results / "tracks.parquet", "tracks")
    assert set(SCHEMAS) >= {"train", "eval", "export", "latency", "complexity", "metrics"}


def test_training_logs_per_epoch_progress(tiny_run):
    log = (tiny_run.root / "logs" / "pretrain" / "mnist" / "resnet20" / "seed0.log").read_text()
    assert log.count("epoch ") >= TINY["tasks"]["mnist"]["pretrain"]["epochs"]
    assert "loss" in log and "acc" in log and "time" in log
    bench = tiny_run.root / "benchmarks" / "binarize_finetune" / "mnist" / "resnet20" / "bnn"
    assert (bench / "seed0.tsv").exists()


def test_every_form_is_exported_and_agrees_with_pytorch(tiny_run):
    results = tiny_run.root / "results"
    export = pd.concat(read_table(p, "export") for p in results.rglob("export.parquet"))
    assert export["checker_passed"].all()
    assert (export["status"] == "ok").all(), export[export["status"] != "ok"]
    assert (export["argmax_agreement"] >= 0.9).all()
    n_cells = len(TINY["tasks"]) * len(TINY["algorithms"]) * len(TINY["seeds"])
    forms = export.groupby("form").size().to_dict()
    n_binary = n_cells - len(TINY["tasks"]) * len(TINY["seeds"])
    assert forms == {"onnx": n_cells, "qonnx": n_cells, "openvino_binary": n_binary}
    binary = export[export["form"] == "openvino_binary"]
    assert (binary["n_binary_conv"] == binary["n_binarized_layers"]).all()
    assert (binary["packed_bytes"] * 5 < export[export["form"] == "onnx"]["file_bytes"].max()
            ).all()


def test_latency_rows_cover_every_engine_and_the_binary_one_executes(tiny_run):
    results = tiny_run.root / "results"
    latency = read_table(results / "latency.parquet", "latency")
    bnn = latency[latency["algorithm"] == "bnn"]
    assert set(bnn["engine"]) == {"onnxruntime", "openvino_fp32", "openvino_binary"}
    assert (latency["status"] == "ok").all(), latency[latency["status"] != "ok"]
    assert (latency["repeats"] >= 50).all()
    assert (latency["p10_ms"] <= latency["median_ms"]).all()
    assert (latency["median_ms"] <= latency["p90_ms"]).all()
    binary = bnn[bnn["engine"] == "openvino_binary"]
    assert (binary["n_binary_conv"] > 0).all() and (binary["precision"] == "binary").all()
    assert latency["cpu_model"].str.len().gt(0).all()
    assert latency["cpu_isa"].str.len().gt(0).all()
    assert latency["engine_version"].str.match(r"(onnxruntime|openvino) \d").all()
    # every row timed inside a registered window, alone (latency_slot: one job at a time)
    assert latency["concurrent_timing"].eq(False).all()
    assert (latency["load_avg_start"] >= 0).all() and (latency["load_avg_end"] >= 0).all()
    # the hand-built ResNet-20 reference, timed beside every binary-engine row
    assert (binary["reference_status"] == "ok").all()
    assert (binary["reference_speedup_vs_fp32"] > 1).all()
    floats = latency[latency["engine"] != "openvino_binary"]
    assert (floats["reference_status"] == "not applicable: float engine").all()


def test_summary_has_the_mean_and_interval_over_both_seeds(tiny_run):
    results = tiny_run.root / "results"
    summary = read_table(results / "summary.parquet", "summary")
    clean = summary[(summary["condition"] == "clean") & (summary["quantity"] == "value")]
    assert (clean["n_seeds"] == len(TINY["seeds"])).all()
    assert (clean["ci95_low"] <= clean["mean"]).all()
    assert (clean["mean"] <= clean["ci95_high"]).all()
    metrics = read_table(results / "metrics.parquet", "metrics")
    bnn = metrics[(metrics["algorithm"] == "bnn") & (metrics["task"] == "mnist")
                  & (metrics["condition"] == "clean")]
    row = clean[(clean["algorithm"] == "bnn") & (clean["task"] == "mnist")].iloc[0]
    assert row["mean"] == pytest.approx(bnn["value"].mean())
    tracks = read_table(results / "tracks.parquet", "tracks")
    om = tracks[(tracks["algorithm"] == "bnn") & (tracks["metric"] == "OM_task")].iloc[0]
    assert om["n_seeds"] == len(TINY["seeds"]) and om["ci95_low"] <= om["seed_mean"]


def _job_of_log(log: Path, root: Path) -> tuple[str, dict]:
    """The rule and the cell a job's log belongs to, from the log's path."""
    parts = log.relative_to(root / "logs").with_suffix("").parts
    if parts == ("aggregate",):
        archs = {a for t in TINY["tasks"].values() for a in t["architectures"]}
        return "aggregate", {"grid": (tuple(sorted(archs)), tuple(TINY["algorithms"]))}
    if len(parts) == 1:
        return parts[0], {}
    rule, task, arch, *rest = parts
    algorithm = rest[0] if len(rest) > 1 else "fp32"
    if rule == "evaluate" and not TINY["tasks"][task].get("deploy", True):
        rule = "evaluate_without_export"
    cell = {"dataset": TINY["tasks"][task]["dataset"], "arch": arch, "algorithm": algorithm,
            "corruption_files": TINY["tasks"][task].get("corruption_files") is not None}
    return rule, cell


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_every_module_a_job_loads_is_in_its_cache_code_map(tiny_run):
    """A module a job runs but its code map leaves out would let the cache serve results of
    code that has since changed. The jobs log the package files they loaded; each must be in
    the job's map, or be a module of another cell (the registries import every architecture,
    dataset and algorithm; only the cell's own, or for the aggregate the grid's, decide the
    results), or carry no code."""
    from bibench import sources
    from bibench.cache import BINARIZATION, PACKAGE, job_sources
    from bibench.jobs import CODE_LOADED

    def relative(paths):
        return {Path(p).resolve().relative_to(PACKAGE).as_posix() for p in paths}

    # the version label (the code fingerprint, not the version, identifies the code), the code
    # map itself (editing it changes every job's fingerprint), packages that are a docstring
    neutral = {"__init__.py", "cache.py", "sources.py"} | {
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("__init__.py")
        if _docstring_only(p)}
    per_cell = relative(algorithm_sources().values()) | set(BINARIZATION)
    for arch in sources.architectures():
        per_cell |= set(sources.architecture_files(arch))
    for dataset in sources.datasets():
        per_cell |= set(sources.dataset_files(dataset))
    rules = set()
    for log in sorted((tiny_run.root / "logs").rglob("*.log")):
        loaded = [line.split(CODE_LOADED, 1)[1].split() for line in log.read_text().splitlines()
                  if CODE_LOADED in line]
        assert loaded, f"{log} does not say what code it loaded"
        rule, cell = _job_of_log(log, tiny_run.root)
        rules.add(rule)
        mapped = relative(job_sources(rule, **cell))
        outside = set(loaded[-1]) - mapped - neutral - per_cell
        assert not outside, f"{rule} {cell}: loads {sorted(outside)} outside its code map"
    assert rules == {"pretrain", "binarize_finetune", "evaluate", "latency", "sensitivity",
                     "aggregate", "report"}


# --------------------------------------------------------------------------- rerun semantics


def test_second_run_has_nothing_to_do(tiny_run):
    # (how fast the dry run is, is measured by bench/dry_run.py, not asserted here)
    assert tiny_run.planned_jobs() == {}
    proc = tiny_run.snakemake("-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bench_dry_run_counts_what_snakemake_plans(workflow_copy, tiny_run):
    def bench(wf):
        proc = subprocess.run(
            [sys.executable, str(REPO / "bench" / "dry_run.py"), "--configfile", "tiny.yaml",
             "--repeats", "1", "--json"],
            cwd=wf.root, env=wf.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    fresh = bench(workflow_copy)
    assert fresh["jobs"] == sum(workflow_copy.planned_jobs().values()) > 0
    assert fresh["nothing_to_do"] is False and fresh["median_seconds"] > 0
    finished = bench(tiny_run)
    assert finished["jobs"] == 0 and finished["nothing_to_do"] is True


def test_reordering_config_keys_changes_nothing(tiny_run):
    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    config = _write_config(tiny_run, "reordered.yaml", reverse(TINY))
    assert tiny_run.planned_jobs(config=config) == {}


def test_adding_a_seed_plans_only_its_cells_from_the_shared_fp32_models(tiny_run):
    # the FP32 model of each task is shared by every seed and latency is measured on the first
    # seed's forms: a new seed finetunes and evaluates its own cells, nothing else
    new = max(TINY["seeds"]) + 1
    config = _write_config(tiny_run, "seeds.yaml", _variant(lambda c: c["seeds"].append(new)))
    jobs = tiny_run.planned_jobs(config=config)
    n_tasks = len(TINY["tasks"])  # one architecture per task
    assert jobs == {"binarize_finetune": n_tasks * (len(TINY["algorithms"]) - 1),
                    "evaluate": n_tasks * len(TINY["algorithms"]),
                    "aggregate": 1, "report": 1, "all": 1}
    outputs = [o for o in tiny_run.planned_outputs(config=config) if "/cells/" in o]
    assert outputs and all(f"/seed{new}/" in o for o in outputs)


def test_adding_an_algorithm_plans_only_its_cells(tiny_run):
    new = next(a for a in algorithm_sources() if a not in TINY["algorithms"])
    config = _write_config(tiny_run, "more.yaml",
                           _variant(lambda c: c["algorithms"].append(new)))
    jobs = tiny_run.planned_jobs(config=config)
    n_cells = len(TINY["tasks"]) * len(TINY["seeds"])  # one architecture per task
    grid = TINY["sensitivity"]
    n_runs = len(grid["tasks"]) * len(grid["settings"]) * len(grid["seeds"])
    assert jobs == {
        # latency: once per (task, arch, algorithm), on the first seed's forms
        "binarize_finetune": n_cells, "evaluate": n_cells, "latency": len(TINY["tasks"]),
        "sensitivity": n_runs, "aggregate": 1, "report": 1,
        "all": 1,  # the default target rule, which computes nothing
    }
    outputs = [o for o in tiny_run.planned_outputs(config=config) if "/cells/" in o]
    assert outputs and all(f"/{new}/" in o for o in outputs)


def test_editing_an_algorithm_file_makes_only_its_cells_stale(tiny_run):
    source = tiny_run.root / "bibench" / "algorithms" / "bnn.py"
    text, before = source.read_text(), source.stat()
    try:  # an edit (Snakemake >= 9.18 compares checksums, so touching alone is not an edit)
        source.write_text(text + "\n# edited\n")
        outputs = tiny_run.planned_outputs()
    finally:
        source.write_text(text)
        os.utime(source, (before.st_atime, before.st_mtime))
    cell_outputs = [o for o in outputs if "results/cells/" in o]
    assert cell_outputs
    assert all("/bnn" in o for o in cell_outputs), cell_outputs
    assert not any("results/pretrain/" in o for o in outputs)


def test_changing_one_tasks_hyperparameter_makes_only_its_cells_stale(tiny_run):
    config = _write_config(tiny_run, "lr.yaml",
                           _variant(lambda c: c["tasks"]["digits"]["finetune"].update(lr=5e-4)))
    outputs = tiny_run.planned_outputs(config=config)
    cell_outputs = [o for o in outputs if o.startswith("results/cells/")
                    or o.startswith("results/pretrain/")]
    assert cell_outputs
    assert all(o.startswith("results/cells/digits/resnet20/bnn/") for o in cell_outputs), outputs

    config = _write_config(tiny_run, "epochs.yaml", _variant(
        lambda c: c["tasks"]["mnist"]["pretrain"].update(epochs=3)))
    outputs = tiny_run.planned_outputs(config=config)
    assert any(o.startswith("results/pretrain/mnist/") for o in outputs)
    assert not any("/digits/" in o for o in outputs), outputs


def test_a_task_that_does_not_deploy_is_measured_without_forms_or_latency(tiny_run,
                                                                          tmp_path):
    """deploy: false: the task's cells get their metric and complexity, no export forms and
    no latency; the summary tables and the report say so, and the other task is untouched."""
    from conftest import Workflow

    wf = Workflow.clone(tiny_run, tmp_path / "wf")
    config = _write_config(wf, "undeployed.yaml",
                           _variant(lambda c: c["tasks"]["digits"].update(deploy=False)))
    cells = len(TINY["algorithms"]) * len(TINY["seeds"])
    assert wf.planned_jobs(config=config) == {"evaluate_without_export": cells,
                                              "aggregate": 1, "report": 1, "all": 1}
    outputs = wf.planned_outputs(config=config)
    assert not any(o.endswith(("model.onnx", "export.parquet", "latency.parquet"))
                   for o in outputs), outputs
    wf.snakemake(config=config)
    results = wf.root / "results"
    metrics = read_table(results / "metrics.parquet", "metrics")
    digits, mnist = metrics[metrics["task"] == "digits"], metrics[metrics["task"] == "mnist"]
    assert digits["value"].notna().all() and (digits["compression_ratio"] > 0).all()
    assert digits["onnx_argmax_agreement"].isna().all()
    timed = mnist["seed"] == TINY["seeds"][0]
    assert digits["latency_median_ms"].isna().all()
    assert mnist.loc[timed, "latency_median_ms"].notna().all()
    assert set(read_table(results / "latency.parquet", "latency")["task"]) == {"mnist"}
    assert "<code>deploy: false</code>" in (results / "report.html").read_text()
    for stale in (results / "cells" / "digits").rglob("*"):  # the deployed run's files
        if stale.name in ("export.parquet", "latency.parquet", "model.onnx"):
            stale.unlink()
    assert wf.planned_jobs(config=config) == {}  # not wanted: not recomputed
    status = subprocess.run([sys.executable, "-m", "bibench.cli", "status", "--configfile",
                             config, "--json"], cwd=wf.root, env=wf.env, capture_output=True,
                            text=True, check=True)
    states = {s["cell"]: s["state"] for s in json.loads(status.stdout)}
    assert set(states.values()) <= {"up to date", "at chance"}, states
    source = wf.root / "bibench" / "export" / "qonnx.py"  # export code: deployed cells only
    source.write_text(source.read_text() + "\n# edited\n")
    assert wf.planned_jobs(config=config) == {"evaluate": cells,
                                              "latency": len(TINY["algorithms"]),
                                              "aggregate": 1, "report": 1, "all": 1}


# --------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda c: c["algorithms"].append("nosuchalgo"), ["algorithms.2", "nosuchalgo"]),
        (lambda c: c["tasks"]["mnist"]["pretrain"].update(epochs=-3),
         ["tasks.mnist.pretrain.epochs", "-3"]),
        (lambda c: c["tasks"]["mnist"].update(architecure=["resnet20"]),
         ["tasks.mnist", "architecure"]),
        (lambda c: c.update(seed=[1]), ["<top level>", "seed"]),
    ],
    ids=["unknown-algorithm", "negative-epochs", "misspelled-task-key", "misspelled-top-key"],
)
def test_bad_config_stops_before_any_job(workflow_copy, edit, names):
    config = _write_config(workflow_copy, "bad.yaml", _variant(edit))
    proc = workflow_copy.snakemake("results/report.html", config=config, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "invalid bibench config" in message
    for name in names:
        assert name in message
    assert not (workflow_copy.root / "results").exists()
    assert not (workflow_copy.root / "logs").exists()


def test_lint_is_clean(workflow_copy):
    proc = workflow_copy.snakemake("--lint", config=None, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_paper_grid_plans_every_cell_without_inheriting_the_default(workflow_copy):
    config = yaml.safe_load((workflow_copy.root / "config" / "paper.yaml").read_text())
    jobs = workflow_copy.planned_jobs(config="config/paper.yaml")
    n_arch_tasks = sum(len(t["architectures"]) for t in config["tasks"].values())
    n_cells = n_arch_tasks * len(config["seeds"])
    n_binary = len(config["algorithms"]) - 1
    assert jobs["pretrain"] == n_cells
    assert jobs["binarize_finetune"] == n_cells * n_binary
    for rule in ("evaluate", "latency"):
        assert jobs[rule] == n_cells * len(config["algorithms"])
    # every downloadable dataset of the grid once (ImageNet is read from the user's copy)
    datasets = {t["dataset"] for t in config["tasks"].values()} - {"imagenet"}
    assert jobs["download_dataset"] == len(datasets) + 1  # + the CIFAR-10-C files
    grid = config["sensitivity"]
    assert jobs["sensitivity"] == (len(grid["settings"]) * len(grid["seeds"])
                                   * len(config["algorithms"]))
    outputs = workflow_copy.planned_outputs(config="config/paper.yaml")
    assert not any("/mnist/" in o or "/text/" in o for o in outputs)  # default tasks not merged
