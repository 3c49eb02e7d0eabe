"""`bibench status`: is each cell's result up to date with the config and the code?

Every row carries the hash of the settings its job received (`cell_config_hash`) and of the
code it came from (`code_fingerprint`, bibench.cache). Status recomputes both from the current
config and source files, as the workflow does, and compares: no Snakemake and no torch needed.
A cell is

- `stale` when a file is missing or damaged, a table's settings or code hash differs, or a
  job's input is newer than its output (the next `snakemake` run recomputes it);
- else `failed` (training or an export form failed), `diverged`, `at chance` (the `at_chance`
  column of results/metrics.parquet, where the aggregate job wrote one) or `up to date`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bibench.cache import code_fingerprint
from bibench.catalog import FP32
from bibench.config import (
    config_hash,
    corruption_settings,
    dataset_settings,
    sensitivity_run_settings,
    training_settings,
)
from bibench.io import DamagedFileError, read_table

UP_TO_DATE, STALE, FAILED, DIVERGED, AT_CHANCE = (
    "up to date", "stale", "failed", "diverged", "at chance")
EXPORT_FILES = ("model.onnx", "model.qonnx.onnx", "openvino")


@dataclass
class Job:
    """One job of a cell: its rule, the settings it hashes, its tables, files and inputs."""
    rule: str
    settings: dict[str, dict[str, Any]]  # table name -> the settings its rows hash
    code: str
    tables: dict[str, Path]  # table name -> path
    files: list[Path] = field(default_factory=list)  # outputs that are not tables
    inputs: list[Path] = field(default_factory=list)


@dataclass
class CellStatus:
    cell: str
    state: str
    why: list[str]
    rows: dict[str, Any] = field(default_factory=dict, repr=False)


def cell_jobs(config: dict[str, Any], task: str, arch: str, algo: str, seed: int, root: Path
              ) -> list[Job]:
    """The jobs of a cell as the workflow defines them (workflow/rules/*.smk)."""
    spec = config["tasks"][task]
    data = dataset_settings(spec)
    cell = root / f"results/cells/{task}/{arch}/{algo}/seed{seed}"
    pretrained = root / f"results/pretrain/{task}/{arch}/seed{seed}"
    trained = pretrained if algo == FP32 else cell
    train_rule = "pretrain" if algo == FP32 else "binarize_finetune"

    def code(rule: str) -> str:
        return code_fingerprint(rule, spec["dataset"], arch, algo,
                                spec["corruption_files"] is not None)

    model = trained / "model.pt"
    fp32_onnx = root / f"results/cells/{task}/{arch}/{FP32}/seed{seed}/model.onnx"
    train = Job(train_rule, {"train": {"dataset": data,
                                       "settings": training_settings(spec, algo)}},
                code(train_rule), {"train": trained / "train.parquet"}, [model],
                [] if algo == FP32 else [pretrained / "model.pt"])
    measured = {"eval": {"dataset": data, "corruptions": corruption_settings(spec)},
                "complexity": {"dataset": data}}
    tables = {"eval": cell / "eval.parquet", "complexity": cell / "complexity.parquet"}
    if not spec["deploy"]:  # accuracy and complexity only (workflow rule evaluate_without_export)
        return [train, Job("evaluate", measured, code("evaluate_without_export"), tables, [],
                           [model])]
    return [
        train,
        Job("evaluate", {**measured, "export": {"dataset": data, "settings": config["export"]}},
            code("evaluate"), {**tables, "export": cell / "export.parquet"},
            [cell / n for n in EXPORT_FILES], [model]),
        Job("latency", {"latency": {"settings": config["latency"]}}, code("latency"),
            {"latency": cell / "latency.parquet"}, [],
            [cell / "model.onnx", cell / "export.parquet", fp32_onnx]),
    ]


def sensitivity_job(config: dict[str, Any], task: str, arch: str, algo: str, setting: str,
                    seed: int, root: Path) -> Job:
    spec = config["tasks"][task]
    settings = sensitivity_run_settings(config, task, algo, setting)
    table = root / f"results/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.parquet"
    start = [] if algo == FP32 else [
        root / f"results/pretrain/{task}/{arch}/seed{config['seeds'][0]}/model.pt"]
    return Job("sensitivity", {"sensitivity": {"dataset": dataset_settings(spec),
                                               "settings": settings}},
               code_fingerprint("sensitivity", spec["dataset"], arch, algo),
               {"sensitivity": table}, [], start)


def _stale_reasons(job: Job, rows: dict[str, Any]) -> list[str]:
    """Why this job's results are not those the workflow would compute now (empty: they are)."""
    outputs = [*job.tables.values(), *job.files]
    missing = [p for p in outputs if not p.exists()]
    if missing:
        return [f"missing file {p}" for p in missing]
    why = []
    for name, path in job.tables.items():
        try:
            frame = rows[name] = read_table(path, name)
        except DamagedFileError as err:
            why.append(f"damaged file {path}: {err.problem}")
            continue
        if (frame["cell_config_hash"] != config_hash(job.settings[name])).any():
            why.append(f"config changed ({job.rule})")
        if (frame["code_fingerprint"] != job.code).any():
            why.append(f"code changed ({job.rule})")
    oldest = min(p.stat().st_mtime for p in outputs)
    newer = [p for p in job.inputs if p.exists() and p.stat().st_mtime > oldest]
    why += [f"input newer than output ({job.rule}: {p.name})" for p in newer]
    return sorted(set(why), key=why.index)


def _outcome(rows: dict[str, Any]) -> tuple[str, list[str]]:
    """failed, diverged or up to date, from the train/sensitivity and export rows."""
    train = rows.get("train")
    status = (str(train["status"].iloc[-1]) if train is not None
              else str(rows["sensitivity"]["train_status"].iloc[-1]))
    if status.startswith(("failed", "skipped")):
        return FAILED, [status]
    if status == "diverged":
        return DIVERGED, ["training diverged"]
    export = rows.get("export")
    if export is not None:
        bad = export[export["status"].str.startswith("failed")]
        if len(bad):
            return FAILED, [f"{r.form}: {r.status}" for r in bad.itertuples()]
    return UP_TO_DATE, []


def _status(name: str, jobs: list[Job], chance: set[str]) -> CellStatus:
    rows: dict[str, Any] = {}
    why = [w for job in jobs for w in _stale_reasons(job, rows)]
    if why:
        return CellStatus(name, STALE, why, rows)
    state, why = _outcome(rows)
    if state == UP_TO_DATE and name in chance:
        return CellStatus(name, AT_CHANCE, ["clean metric at chance (metrics.parquet)"], rows)
    return CellStatus(name, state, why, rows)


def _at_chance_cells(root: Path) -> set[str]:
    """Cells marked at chance by the aggregate job, when its metrics table has that column."""
    import pyarrow.parquet as pq

    path = root / "results" / "metrics.parquet"
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception:  # noqa: BLE001  missing or damaged: the cells' own rows say so
        return set()
    if "at_chance" not in frame.columns:
        return set()
    marked = frame[(frame["condition"] == "clean") & frame["at_chance"].fillna(False)]
    return {f"{r.task}/{r.arch}/{r.algorithm}/seed{r.seed}" for r in marked.itertuples()}


def grid_status(config: dict[str, Any], root: str | Path = ".") -> list[CellStatus]:
    """The status of every cell and sensitivity run of the (checked) config."""
    root = Path(root)
    chance = _at_chance_cells(root)
    out = []
    for task, spec in config["tasks"].items():
        for arch in spec["architectures"]:
            for algo in config["algorithms"]:
                for seed in config["seeds"]:
                    name = f"{task}/{arch}/{algo}/seed{seed}"
                    out.append(_status(name, cell_jobs(config, task, arch, algo, seed, root),
                                       chance))
    grid = config["sensitivity"]
    for task in grid["tasks"]:
        for arch in config["tasks"][task]["architectures"]:
            for algo in config["algorithms"]:
                for setting in grid["settings"]:
                    for seed in grid["seeds"]:
                        job = sensitivity_job(config, task, arch, algo, setting, seed, root)
                        name = f"sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}"
                        out.append(_status(name, [job], set()))
    return out


def as_json(statuses: list[CellStatus]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(s).items() if k != "rows"} for s in statuses]


def as_table(statuses: list[CellStatus]) -> str:
    width = max([len(s.cell) for s in statuses] + [4])
    lines = [f"{'cell':<{width}}  {'state':<10}  why", "-" * (width + 30)]
    lines += [f"{s.cell:<{width}}  {s.state:<10}  {'; '.join(s.why)}" for s in statuses]
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return "\n".join(lines)
