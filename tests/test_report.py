"""The report's findings and tables, from hand-made tables: generated from the data, with the
paper beside ours and intervals where there are seeds."""

from __future__ import annotations

import math

import pandas as pd
from test_metrics_seeds import _two_seeds

from bibench.metrics.seeds import seed_summary
from bibench.metrics.tracks import compute_tracks_over_seeds
from bibench.report.cells import cell_marks, task_tables
from bibench.report.common import stats_index
from bibench.report.overview import deployment_findings, findings, largest_drops, separations


def _latency(algorithm: str, status: str, engine: str = "openvino_binary") -> dict:
    return {"task": "img", "arch": "resnet20", "algorithm": algorithm, "seed": 0,
            "device_name": "here", "engine": engine, "threads": 1, "status": status,
            "speedup_vs_fp32": 4.0 if status == "ok" else math.nan, "storage_saving": 20.0}


def test_deployment_findings_name_who_does_not_deploy_and_why():
    latency = pd.DataFrame([_latency("bnn", "ok"), _latency("fp32", "ok", "onnxruntime"),
                            _latency("xnorpp", "not deployable: spatial scale factors")])
    lines = deployment_findings(latency)
    assert lines[0] == "Deployed with 1-bit kernels on every measurement: bnn."
    assert lines[1].startswith("xnorpp does not deploy on openvino_binary (1 of 1 rows)")
    assert "spatial scale factors" in lines[1]
    assert "No binary engine" in deployment_findings(latency[latency["engine"] == "x"])[0]


def test_largest_drop_is_the_lowest_share_of_fp32():
    stats = stats_index(seed_summary(_two_seeds()))
    (drop, corrupted) = largest_drops(stats)
    # bnn keeps 0.4/0.8 on txt (seed 0) and 0.36/0.8 (seed 1): the lowest share of FP32
    assert drop.startswith("Largest accuracy drop: bnn on txt/bert keeps 47.5 ± ")
    assert "under gaussian_noise at severity 2" in corrupted


def test_separations_name_only_significant_differences():
    from bibench.metrics.comparisons import COMPARISON_COLUMNS

    def row(a, b, diff, low, high, better, seeds=1):
        return dict(zip(COMPARISON_COLUMNS, [
            "t", "a", "accuracy", a, b, 0.5, 0.5, diff, low, high, 0.01, better, seeds, 500,
            2000, "paired bootstrap over test examples (one seed)"], strict=True))

    pairs = pd.DataFrame([row("bnn", "fda", -0.05, -0.08, -0.02, "fda"),
                          row("bnn", "xnor", 0.01, -0.02, 0.04, "tied")])
    lines = separations(pairs)
    assert lines[0].startswith("Paired tests of the clean metric (paired bootstrap over test "
                               "examples (one seed)): 1 of 2 differences")
    assert "One seed: a second seed may still reverse" in lines[0]
    assert lines[1:] == ["t/a: fda > bnn by 5.00 points [2.00, 8.00]"]
    assert separations(pairs.iloc[1:].assign(seeds=3))[0].endswith("the others are tied.")
    assert separations(None)[0].startswith("No paired test")
    assert separations(pairs.iloc[:0])[0].startswith("No two comparable binarized algorithms")
    # a pair with a cell at chance (or failed, or with an eval gap) is no finding
    assert separations(pairs, {("t", "a", "fda")})[0].startswith(
        "Paired tests of the clean metric (paired bootstrap over test examples (one seed)): "
        "0 of 1 differences")


def _metrics_for_tables() -> pd.DataFrame:
    frame = _two_seeds()
    frame["stands_in_for"] = frame["task"].map({"img": "CIFAR-10", "txt": "GLUE (SST-2)"})
    frame["embedded"] = True
    frame["metric"] = "accuracy"
    frame["arch"] = frame["arch"].map({"resnet20": "resnet20", "bert": "minilm_l6"})
    return frame


def test_task_tables_put_the_paper_beside_ours_and_say_stand_in():
    metrics = _metrics_for_tables()
    tables = {t["task"]: t for t in task_tables(metrics, stats_index(seed_summary(metrics)))}
    img = tables["img"]
    assert img["heading"] == "embedded stand-in for CIFAR-10: compare orders, not values"
    row = img["rows"][0]
    assert row["source"] == "Table 7, row CIFAR10 ResNet20"
    cells = dict(zip(img["algorithms"], row["cells"], strict=True))
    assert cells["fp32"]["paper"] == 91.99 and cells["bnn"]["paper"] == 85.31
    assert cells["bnn"]["text"].startswith("68.40 ± ")  # (72 + 64.8) / 2
    assert cells["fda"]["mark"] == "diverged"
    assert row["rho"].startswith("n/a (1 algorithm in common")  # fda has no value
    txt = tables["txt"]["rows"][0]
    assert txt["source"] == "Table 9, row SST-2 BERT-Tiny6L"


def test_a_mark_column_added_by_another_stage_is_shown():
    metrics = _metrics_for_tables()
    metrics["status"] = ["at chance" if a == "bnn" and t == "txt" else "ok"
                         for a, t in zip(metrics["algorithm"], metrics["task"], strict=True)]
    marks = cell_marks(metrics)
    assert marks[("txt", "minilm_l6", "bnn")] == "at chance"
    assert marks[("img", "resnet20", "bnn")] == ""


def test_findings_come_from_the_tables():
    metrics = _metrics_for_tables()
    tracks = compute_tracks_over_seeds(metrics)
    latency = pd.DataFrame([_latency("bnn", "ok")])
    lines = findings(tracks, latency, stats_index(seed_summary(metrics)), metrics)
    # fda diverged on img: its OM_task covers 1 of the 2 cells, bnn's both. fda's higher
    # value compares unlike with like: it is never best, and bnn alone is not ranked
    task = next(line for line in lines if line.startswith("Learning task (%) (OM_task)"))
    assert "best is" not in task and "not ranked" in task
    assert "fda: 1 of 2 (task, arch) left out: fewer cells than the others" in task
    assert "the paper's best: reactnet 81.81" in task
    from bibench.report.overview import track_verdict

    assert track_verdict(tracks, "learning_task") == "not ranked"  # the figure's panel says so
    assert lines[-1].startswith("2 cell(s) failed or diverged in training: "
                                "img/resnet20/fda/seed0 (diverged)")


def _timed(algorithm: str, engine: str, threads: int, status: str, device: str = "here") -> dict:
    timed = status == "ok" or status.startswith("contended")
    return {**_latency(algorithm, status, engine), "device_name": device, "threads": threads,
            "median_ms": 1.0 if timed else math.nan, "fp32_median_ms": 4.0 if timed else math.nan,
            "speedup_vs_fp32": 4.0 if timed else math.nan, "cpu_model": "cpu",
            "cpu_isa": "avx2", "engine_version": "onnxruntime 1.x", "n_binary_conv": 3,
            "reference_status": "not applicable: float engine"}


def _render_latency_tables(tables: list[dict]) -> str:
    """The report template's per-device latency tables, rendered alone."""
    import jinja2

    from bibench.report import TEMPLATES

    source = (TEMPLATES / "report.html.j2").read_text()
    start = source.index("{% for t in latency_tables %}")
    end = source.index("</details>\n{% endfor %}", start) + len("</details>\n{% endfor %}")
    env = jinja2.Environment(autoescape=True)
    return env.from_string(source[start:end]).render(latency_tables=tables)


def test_latency_tables_show_why_a_cell_was_not_timed_in_the_table():
    """A remote board's failure and a contended timing are read in the table (a mark and a
    numbered note under it), not only in a hover tooltip."""
    from bibench.report.hardware import deployability, latency_tables

    dead = ("failed: unreachable: ssh: connect to host 10.0.0.5 port 22: Connection refused "
            "(remote device 'pi5'; ssh failed once, not tried again in this job)")
    contended = ("contended: another bibench job timed on the same device at the same time "
                 "(pid 42 timing img/resnet20/bnn/seed1 here/onnxruntime/1t); re-time the cell")
    latency = pd.DataFrame([
        _timed("fp32", "onnxruntime", 1, "ok"), _timed("bnn", "onnxruntime", 1, contended),
        _timed("fp32", "onnxruntime", 1, dead, "pi5"), _timed("bnn", "onnxruntime", 1, dead, "pi5"),
        _timed("bnn", "openvino_binary", 1, contended)])
    tables = {t["device"]: t for t in latency_tables(latency)}
    [fp32, bnn] = tables["pi5"]["rows"][0]["groups"][0]
    assert fp32["mark"] == bnn["mark"] == "failed" and fp32["note"] == bnn["note"] == 1
    assert tables["pi5"]["notes"] == [dead]
    [fp32, bnn] = tables["here"]["rows"][0]["groups"][0]
    assert fp32["status"] == "ok" and fp32["ms"] == "4.000"  # the clean FP32 timing
    assert bnn["mark"] == "contended" and bnn["ms"] == "1.000"  # kept, and marked
    assert "--forcerun" in tables["here"]["notes"][bnn["note"] - 1]
    html = _render_latency_tables(list(tables.values()))
    assert '<span class="mark">failed [1]</span>' in html
    assert "Connection refused" in html.split('<ol class="latency-notes">')[1]
    assert '1.000 <span class="mark">contended [1]</span>' in html
    # a contended binary timing still ran the 1-bit kernels: deployed
    assert deployability(latency)[0]["observed"] == "deployable"


def test_deployment_findings_do_not_call_a_contended_timing_a_failure():
    contended = "contended: another bibench job timed on the same device at the same time"
    latency = pd.DataFrame([_latency("bnn", "ok"), _latency("bnn", contended)])
    assert deployment_findings(latency) == [
        "Deployed with 1-bit kernels on every measurement: bnn."]


def test_deployability_says_where_declared_and_tried_differ_and_why():
    """XNOR++ declares spatial scales (not deployable) but alpha only on Linear and point-wise
    layers: the binary engine runs its PointNet and not its ResNet. The table says both, and
    why they differ; BNN, declared and found deployable, agrees."""
    from bibench.report.hardware import deployability

    def row(algo, task, arch, status):
        return {**_latency(algo, status), "task": task, "arch": arch, "n_binary_conv": 3}

    latency = pd.DataFrame([
        row("xnorpp", "pointcloud", "pointnet_vanilla", "ok"),
        row("xnorpp", "mnist", "resnet20", "not deployable: spatial scale factors"),
        row("bnn", "pointcloud", "pointnet_vanilla", "ok"),
        row("bnn", "mnist", "resnet20", "ok")])
    rows = {d["algorithm"]: d for d in deployability(latency)}
    xnorpp = rows["xnorpp"]
    assert xnorpp["declared"] is False and "Linear: per-channel" in xnorpp["layer_note"]
    assert xnorpp["observed"].startswith("deployed on pointcloud/pointnet_vanilla; not on "
                                         "mnist/resnet20: not deployable: spatial")
    assert "per layer kind" in xnorpp["agreement"]
    assert "pointcloud/pointnet_vanilla" in xnorpp["agreement"]
    assert rows["bnn"]["declared"] is True and rows["bnn"]["agreement"] == ""
