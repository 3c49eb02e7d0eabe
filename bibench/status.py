"""`bibench status`: is each cell's result up to date with the config and the code?

Status is derived from the same facts as the run, and never contradicts `snakemake -n`:

- whether a job reruns is Snakemake's own plan (`snakemake --summary` in the workflow's folder,
  `snakemake_plan`), which sees what the run sees: file times and checksums, its records of
  params and code, deleted and damaged results (workflow/rules/common.smk forces both);
- why is what the files say: every row carries the hash of the settings its job received
  (`cell_config_hash`) and of the code it came from (`code_fingerprint`, bibench.cache), which
  status recomputes from the config and the sources the workflow imports (the `bibench/` beside
  the folder's Snakefile: `bibench status` runs that package's status, bibench.cli); a table
  or checkpoint that cannot be read is damaged (bibench.cache.damage, the check the workflow
  makes), whatever its modification time.

Without a Snakefile in the folder (results copied elsewhere) status judges by the files alone,
and by input times as Snakemake reads them. A cell is

- `damaged` when one of its files cannot be read (the next `snakemake` run recomputes it);
- `stale` when the next run recomputes one of its jobs: a file missing, settings or code
  changed, an input newer than an output or recomputed first;
- else `failed` (training or an export form failed), `diverged`, `eval gap` or `at chance`
  (the `eval_gap` and `at_chance` columns of results/metrics.parquet, where the aggregate job
  wrote them) or `up to date`.

The aggregate tables and the report have a line each: `stale` or `damaged` as above (the cells'
at-chance marks are unknown while results/metrics.parquet is missing or damaged), and a report
job that failed says so, with the last good report it kept (bibench.jobs.report).

A cell whose training is up to date but failed, diverged or was skipped (its FP32 start did not
train) is `failed` (`training: <reason>`) or `diverged` even where files downstream are stale:
rerunning cannot change that; the reasons list what the next run would rewrite.

The latency job's own outcome counts too (`_latency_outcome`): a row that failed there (a
remote board that could not be reached or whose command failed, a float fallback) makes the
cell `failed`, and rows timed while another bibench job timed on the same device make it
`contended`, with the command that re-times it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bibench.cache import CHECKPOINT, code_fingerprint, damage
from bibench.catalog import FP32
from bibench.config import (
    config_hash,
    corruption_settings,
    dataset_settings,
    sensitivity_run_settings,
    timed_seed,
    training_settings,
)
from bibench.export.forms import form_paths
from bibench.io import DamagedFileError, read_table, recovery_command

UP_TO_DATE, STALE, FAILED, DIVERGED, AT_CHANCE, EVAL_GAP = (
    "up to date", "stale", "failed", "diverged", "at chance", "eval gap")
DAMAGED = "damaged"
# Snakemake's plan for one output file (snakemake --summary): (rule, its status, the plan).
Plan = dict[Path, tuple[str, str, str]]
PENDING = "update pending"


@dataclass
class Job:
    """One job of a cell: its rule, the settings it hashes, its tables, files and inputs."""
    rule: str
    settings: dict[str, dict[str, Any]]  # table name -> the settings its rows hash
    code: str
    tables: dict[str, Path]  # table name -> path
    files: list[Path] = field(default_factory=list)  # outputs that are not tables
    inputs: list[Path] = field(default_factory=list)
    plan: Plan | None = None  # Snakemake's plan for the workflow (None: no Snakefile)


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
    pretrained = root / f"results/pretrain/{task}/{arch}/seed{config['pretrain_seed']}"
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
    evaluate = Job("evaluate", {**measured, "export": {"dataset": data,
                                                      "settings": config["export"]}},
                   code("evaluate"), {**tables, "export": cell / "export.parquet"},
                   [cell / n for n in form_paths()], [model])
    if seed != timed_seed(config):  # latency is measured on one seed's forms only
        return [train, evaluate]
    return [
        train,
        evaluate,
        Job("latency", {"latency": {"settings": config["latency"]}}, code("latency"),
            {"latency": cell / "latency.parquet"}, [],
            [*(cell / n for n in form_paths()), cell / "export.parquet", fp32_onnx]),
    ]


def sensitivity_job(config: dict[str, Any], task: str, arch: str, algo: str, setting: str,
                    seed: int, root: Path) -> Job:
    spec = config["tasks"][task]
    settings = sensitivity_run_settings(config, task, algo, setting)
    table = root / f"results/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.parquet"
    start = [] if algo == FP32 else [
        root / f"results/pretrain/{task}/{arch}/seed{config['pretrain_seed']}/model.pt"]
    return Job("sensitivity", {"sensitivity": {"dataset": dataset_settings(spec),
                                               "settings": settings}},
               code_fingerprint("sensitivity", spec["dataset"], arch, algo),
               {"sensitivity": table}, [], start)


def _stale_reasons(job: Job, rows: dict[str, Any]) -> list[str]:
    """Why this job's results are not those the workflow would compute now (empty: they are).

    With Snakemake's plan (job.plan) the job is stale exactly when the plan recomputes one of
    its outputs: the reasons are what its files say (missing, damaged, settings or code
    changed), else what makes Snakemake rerun it. Without one, its files and input times."""
    outputs = [*job.tables.values(), *job.files]
    missing = [p for p in outputs if not p.exists()]
    if missing:
        return [f"missing file {p}" for p in missing]
    why = [_damaged_reason(p, problem) for p in job.files
           if p.suffix == ".pt" and (problem := damage(p, CHECKPOINT)) is not None]
    for name, path in job.tables.items():
        problem = damage(path, name)
        if problem is None:
            try:
                frame = rows[name] = read_table(path, name)
            except DamagedFileError as err:  # its data, past the footer the check reads
                problem = err.problem
        if problem is not None:
            why.append(_damaged_reason(path, problem))
            continue
        if (frame["cell_config_hash"] != config_hash(job.settings[name])).any():
            why.append(f"config changed ({job.rule})")
        if (frame["code_fingerprint"] != job.code).any():
            why.append(f"code changed ({job.rule})")
    if job.plan is None:
        why += [f"input newer than output ({job.rule}: {p.name})"
                for p in _newer_inputs(job.inputs, outputs)]
    elif not why:
        why = _planned_reasons(job.rule, outputs, job.inputs, job.plan)
    elif not any(job.plan.get(p, ("", "", ""))[2] == PENDING for p in outputs):
        # the files say stale, Snakemake's records do not (e.g. .snakemake/ was deleted)
        why.append(f"the next run does not recompute it ({job.rule}: snakemake has other "
                   f"records of it); to recompute it: "
                   f"{recovery_command(_in_workflow(p) for p in outputs)}")
    return sorted(set(why), key=why.index)


def _in_workflow(path: Path) -> Path:
    """A result's path as the workflow names it (from its folder: results/...)."""
    parts = path.parts
    return Path(*parts[len(parts) - 1 - parts[::-1].index("results"):]) if "results" in parts \
        else path


def _damaged_reason(path: Path, problem: str) -> str:
    """A file that cannot be read is damaged; one of another table's columns is stale (the
    code that wrote it changed: io.py is part of every job's code)."""
    if problem.startswith("its columns are not those"):
        return f"columns changed ({path}: {problem})"
    return f"damaged file {path}: {problem}"


def _mtime(path: Path) -> float:
    """A file's time as Snakemake reads it: a directory output's is its .snakemake_timestamp's."""
    stamp = path / ".snakemake_timestamp"
    return (stamp if path.is_dir() and stamp.exists() else path).stat().st_mtime


def _newer_inputs(inputs: list[Path], outputs: list[Path]) -> list[Path]:
    oldest = min(_mtime(p) for p in outputs)
    return [p for p in inputs if p.exists() and _mtime(p) > oldest]


def _planned_reasons(rule: str, outputs: list[Path], inputs: list[Path], plan: Plan
                     ) -> list[str]:
    """Why Snakemake recomputes a job whose files look current (empty: it does not)."""
    planned = [plan[p][1] for p in outputs if p in plan and plan[p][2] == PENDING]
    if not planned:
        return []
    first = [p for p in inputs if p in plan and plan[p][2] == PENDING]
    if first:
        return [f"input recomputed first ({rule}: {', '.join(sorted({p.name for p in first}))})"]
    if planned[0] == "updated input files":
        newer = _newer_inputs(inputs, outputs)
        return [f"input newer than output ({rule}"
                + (f": {', '.join(sorted({p.name for p in newer}))})" if newer else ")")]
    return [f"the next run recomputes it ({rule}: snakemake says {planned[0]})"]


def _outcome(rows: dict[str, Any]) -> tuple[str, list[str]]:
    """failed, diverged or up to date, from the train/sensitivity and export rows."""
    train = rows.get("train")
    status = (str(train["status"].iloc[-1]) if train is not None
              else str(rows["sensitivity"]["train_status"].iloc[-1]))
    if status.startswith("failed: "):  # failed (training: RuntimeError: ...)
        return FAILED, [f"training: {status[len('failed: '):]}"]
    if status.startswith("skipped"):  # its FP32 start did not train
        return FAILED, [f"training: {status}"]
    if status == "diverged":
        return DIVERGED, ["training diverged"]
    export = rows.get("export")
    if export is not None:
        bad = export[export["status"].str.startswith("failed")]
        if len(bad):
            return FAILED, [f"{r.form}: {r.status}" for r in bad.itertuples()]
    return UP_TO_DATE, []


def _status(name: str, jobs: list[Job], chance: dict[str, list[tuple[str, str]]]
            ) -> CellStatus:
    rows: dict[str, Any] = {}
    stale = [_stale_reasons(job, rows) for job in jobs]
    why = [w for reasons in stale for w in reasons]
    if why and not stale[0] and "train" in rows:
        # training is up to date and did not finish: no rerun changes that, it only rewrites
        # the rows downstream that say so, so the cell is failed (or diverged), not stale
        state, untrained = _outcome({"train": rows["train"]})
        if state != UP_TO_DATE:
            return CellStatus(name, state, untrained + why, rows)
    if why:
        return CellStatus(name, STALE, why, rows)
    state, why = _outcome(rows)
    state, why = _latency_outcome(state, why, jobs, rows)
    if state == UP_TO_DATE and name in chance:
        marks = chance[name]
        return CellStatus(name, marks[0][0], [w for _, w in marks], rows)
    return CellStatus(name, state, why, rows)


CONTENDED = "contended"


def _latency_outcome(state: str, why: list[str], jobs: list[Job], rows: dict[str, Any]
                     ) -> tuple[str, list[str]]:
    """The cell's state and reasons with its latency rows' own problems added: rows that failed
    in the latency job (not the export failures they repeat) make an up-to-date cell `failed`,
    rows timed while another bibench job timed on the same device (`contended: ...`, kept out
    of every result) make it `contended`; both are listed with the devices, engines and thread
    counts they concern."""
    latency = rows.get("latency")
    if latency is None or latency.empty:
        return state, why
    export = rows.get("export")
    repeated = set(export["status"]) if export is not None else set()
    status = latency["status"].astype(str)
    failed = latency[status.str.startswith("failed") & ~status.isin(repeated)]
    contended = latency[status.str.startswith(CONTENDED)]
    extra = [f"latency on {_where(part)}: {reason.splitlines()[0]}"
             for reason, part in failed.groupby("status", sort=True)]
    if len(contended):
        table = next(job.tables["latency"] for job in jobs if "latency" in job.tables)
        extra.append(f"contended latency on {_where(contended)} (another bibench job timed on "
                     f"the same device at the same time; kept out of the results): re-time "
                     f"with snakemake --cores all --forcerun {table}")
    if state == UP_TO_DATE:
        state = FAILED if len(failed) else CONTENDED if len(contended) else state
    return state, why + extra


def _where(rows: Any) -> str:
    """Devices, engines and thread counts of latency rows: `board/onnxruntime 1, 2 threads`."""
    return "; ".join(
        f"{device}/{engine} {', '.join(str(t) for t in sorted(part['threads']))} threads"
        for (device, engine), part in rows.groupby(["device_name", "engine"], sort=True))


def _marked_cells(root: Path) -> dict[str, list[tuple[str, str]]]:
    """Cells the aggregate job marked in results/metrics.parquet, with (state, why): `eval
    gap` (eval-mode accuracy on the training sample far below the last epoch's) and `at
    chance` (clean metric at chance), where its table has those columns."""
    import pyarrow.parquet as pq

    path = root / "results" / "metrics.parquet"
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception:  # noqa: BLE001  missing or damaged: the cells' own rows say so
        return {}
    clean = frame[frame["condition"] == "clean"] if "condition" in frame.columns else frame[:0]
    marks: dict[str, list[tuple[str, str]]] = {}
    if "eval_gap" in clean.columns:
        for r in clean[clean["eval_gap"].fillna(False)].itertuples():
            marks.setdefault(f"{r.task}/{r.arch}/{r.algorithm}/seed{r.seed}", []).append((
                EVAL_GAP, f"eval-mode accuracy on its training sample "
                          f"{100 * r.eval_train_accuracy:.1f}% against "
                          f"{100 * r.last_epoch_train_accuracy:.1f}% in its last epoch "
                          f"(metrics.parquet): not evaluated as it trained"))
    if "at_chance" in clean.columns:
        for r in clean[clean["at_chance"].fillna(False)].itertuples():
            marks.setdefault(f"{r.task}/{r.arch}/{r.algorithm}/seed{r.seed}", []).append(
                (AT_CHANCE, "clean metric at chance (metrics.parquet)"))
    return marks


def grid_status(config: dict[str, Any], root: str | Path = ".", plan: Plan | None = None
                ) -> list[CellStatus]:
    """The status of every cell and sensitivity run of the (checked) config, then of the
    aggregate tables and the report; `plan` is Snakemake's (snakemake_plan), if any."""
    root = Path(root)
    chance = _marked_cells(root)
    out, jobs = [], []

    def add(name: str, cell: list[Job], marks: dict[str, list[tuple[str, str]]]) -> None:
        for job in cell:
            job.plan = plan
        jobs.extend(cell)
        status = _status(name, cell, marks)
        if any(w.startswith("damaged file") for w in status.why):
            status.state = DAMAGED
        out.append(status)

    for task, spec in config["tasks"].items():
        for arch in spec["architectures"]:
            for algo in config["algorithms"]:
                for seed in config["seeds"]:
                    add(f"{task}/{arch}/{algo}/seed{seed}",
                        cell_jobs(config, task, arch, algo, seed, root), chance)
    grid = config["sensitivity"]
    for task in grid["tasks"]:
        for arch in config["tasks"][task]["architectures"]:
            for algo in config["algorithms"]:
                for setting in grid["settings"]:
                    for seed in grid["seeds"]:
                        job = sensitivity_job(config, task, arch, algo, setting, seed, root)
                        add(f"sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}", [job],
                            {})
    return out + summary_status(root, [t for j in jobs for t in j.tables.values()], plan)


# The aggregate's tables (schema name -> file) and the report, with what a failed report job
# leaves (bibench.jobs.report).
SUMMARY_TABLES = {name: f"results/{name}.parquet"
                  for name in ("metrics", "tracks", "latency", "summary", "comparisons",
                               "bootstrap")}
REPORT = "results/report.html"


def summary_status(root: Path, cell_tables: list[Path], plan: Plan | None
                   ) -> list[CellStatus]:
    """The aggregate tables' line and the report's: missing, damaged or recomputed by the next
    run (from `cell_tables`, the aggregate's inputs), and a report job that failed."""
    from bibench.report.notes import report_notes

    tables = {name: root / rel for name, rel in SUMMARY_TABLES.items()}
    why = [f"missing file {p}" for p in tables.values() if not p.exists()]
    why += [_damaged_reason(p, problem) for name, p in tables.items()
            if p.exists() and (problem := damage(p, name)) is not None]
    metrics = tables["metrics"]
    if any(str(metrics) in w for w in why):
        why.append("the cells' at-chance marks are unknown until it is recomputed")
    aggregate = _summary_line("aggregate", list(tables.values()), cell_tables, why, plan)
    html = root / REPORT
    note, last_good = report_notes(html)
    why = [] if html.exists() else [f"missing file {html}"]
    if note.exists():
        lines = note.read_text(errors="replace").strip().splitlines()
        why.append(f"the last report job failed ({note}): {lines[0] if lines else ''}".rstrip())
    if not html.exists() and last_good.exists():
        why.append(f"the last good report is {last_good}")
    report = _summary_line("report", [html], list(tables.values()), why, plan)
    return [aggregate, report]


def _summary_line(name: str, outputs: list[Path], inputs: list[Path], why: list[str],
                  plan: Plan | None) -> CellStatus:
    present = [p for p in outputs if p.exists()]
    if plan is not None:
        why = why or _planned_reasons(name, outputs, inputs, plan)
    elif present and len(present) == len(outputs) and not why:
        why = [f"input newer than output ({name}: {p})"
               for p in _newer_inputs(inputs, outputs)][:1]
    state = (DAMAGED if any(w.startswith("damaged file") for w in why)
             else STALE if why else UP_TO_DATE)
    return CellStatus(name, state, why)


def snakemake_plan(root: Path, configfile: str | Path | None = None) -> Plan | None:
    """What `snakemake -n` would recompute in the workflow folder `root`, output by output
    (`snakemake --summary`: the same DAG, with the deleted and damaged results the workflow
    forces); None where `root` has no Snakefile. Raises RuntimeError when Snakemake fails."""
    if not (root / "Snakefile").is_file():
        return None
    cmd = [sys.executable, "-m", "snakemake", "--summary"]
    if configfile is not None:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("output_file\t")), None)
    if proc.returncode != 0 or header is None:
        raise RuntimeError(f"snakemake --summary failed in {root}:\n"
                           + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:]))
    plan: Plan = {}
    for line in lines[header + 1:]:
        parts = line.split("\t")
        if len(parts) >= 6:
            plan[root / parts[0]] = (parts[2], parts[-2], parts[-1])
    return plan


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
