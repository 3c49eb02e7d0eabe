"""The measured results of the bench/ scripts, kept as JSON and shown in docs/measurements.md.

Record a benchmark's latest result (the command must print its JSON on stdout, i.e. take
`--json`); the file bench/results/NAME.json keeps the date, the CPU model, its ISA flags, the
load average, the command and the result:

    python bench/measurements.py record latency -- python bench/latency.py --reference --json

Keep a result measured on another machine (a GPU machine of the device tool, say): NAME, the
JSON file it printed, the machine in words and the command that ran there:

    python bench/measurements.py import train_step_cuda out.json --machine "1x NVIDIA H200" \
        --command "python bench/train_step.py --device cuda --json"

Rebuild the tables of docs/measurements.md from every bench/results/*.json (the text between a
benchmark's markers is replaced; a benchmark without markers gets a new section at the end):

    python bench/measurements.py rebuild [--check]

`--check` changes nothing and exits 1 when the page is not what the JSON files give.

What is kept names no folder of this machine (`portable`): paths in the checkout are written
relative to it, the home folder as `~`, temporary folders as `$TMPDIR`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "measurements.md"
# The ISA flags that decide kernel speed here (binary popcount, vector width, bf16/AMX).
ISA_FLAGS = re.compile(r"^(avx\w*|fma|f16c|popcnt|amx\w*|sse4_2|neon|asimd\w*|sve\w*)$")


def cpu_facts() -> dict[str, Any]:
    """CPU model, its speed-relevant ISA flags (from lscpu), core count and load average."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                              env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = sorted(f for f in fields.get("Flags", "").split() if ISA_FLAGS.match(f))
    return {"cpu_model": fields.get("Model name", platform.processor() or "unknown"),
            "isa": " ".join(flags), "cores": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SystemExit(f"benchmark name {name!r}: lower-case letters, digits and _")


def _utc(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _places() -> list[tuple[re.Pattern[str], str]]:
    """This machine's folders that a kept result must not name, most specific first, with
    what stands for them: the checkout (paths in it become relative), home, temporary."""
    start = r"(?<![\w.~/-])"  # where a path begins (not inside a word, URL or other path)
    places = [(re.compile(start + re.escape(str(REPO)) + r"(?:/|(?![\w.-]))"), "")]
    home = str(Path.home())
    if home not in ("/", ""):
        places.append((re.compile(start + re.escape(home) + r"(?=/|(?![\w.-]))"), "~"))
    for tmp in dict.fromkeys([tempfile.gettempdir(), "/tmp", "/var/tmp"]):
        places.append((re.compile(start + re.escape(tmp) + r"(?=/|(?![\w.-]))"), "$TMPDIR"))
    return places


def portable(value: Any) -> Any:
    """`value` (a string, or a result's lists and objects) naming no folder of this machine:
    `/path/to/checkout/bench/x.py` is `bench/x.py`, the checkout itself `.`, the home folder
    `~`, a temporary folder `$TMPDIR` (`/tmp/run1` is `$TMPDIR/run1`)."""
    if isinstance(value, dict):
        return {key: portable(v) for key, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if not isinstance(value, str):
        return value
    for pattern, stand_in in _places():
        value = pattern.sub(lambda m, s=stand_in: s or ("" if m.group().endswith("/") else "."),
                            value)
    return value


def _keep(name: str, entry: dict[str, Any], note: str, results: Path) -> Path:
    """Write results/NAME.json: the benchmark's name, `entry`, the note if any, with this
    machine's folders made portable (`portable`)."""
    entry = portable({"benchmark": name, **entry, **({"note": note} if note else {})})
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(entry, indent=1) + "\n")
    return path


def record(name: str, command: list[str], results: Path = RESULTS, note: str = "") -> Path:
    """Run `command` (in the current directory), read its JSON from stdout, write
    results/NAME.json; return the path."""
    _check_name(name)
    started = dt.datetime.now(dt.UTC)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{' '.join(command)} printed no JSON ({err}): pass --json") from None
    return _keep(name, {"date": _utc(started), "command": " ".join(command), **cpu_facts(),
                        "result": result}, note, results)


def import_result(name: str, source: Path, machine: str, command: str,
                  results: Path = RESULTS, note: str = "") -> Path:
    """Keep a JSON result measured elsewhere as results/NAME.json, dated now, with the
    machine as given instead of this one's CPU facts."""
    _check_name(name)
    try:
        result = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"{source}: no JSON result ({err})") from None
    return _keep(name, {"date": _utc(dt.datetime.now(dt.UTC)), "command": command,
                        "machine": machine, "result": result}, note, results)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        value = json.dumps(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _tables(result: dict[str, Any]) -> list[str]:
    """Scalars as one key/value table; objects of scalars as the rows of one table; an object
    of objects (train_step's `algorithms`) as a table of its own, under its key."""
    scalars = {k: v for k, v in result.items() if not isinstance(v, dict)}
    rows = {k: v for k, v in result.items()
            if isinstance(v, dict) and not any(isinstance(x, dict) for x in v.values())}
    lines: list[str] = []
    if scalars:
        lines += ["| | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in scalars.items()]
    if rows:
        columns = list(dict.fromkeys(k for row in rows.values() for k in row))
        lines += [""] if lines else []
        lines += ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {key} | " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |"
                  for key, row in rows.items()]
    for key, value in result.items():
        if isinstance(value, dict) and key not in rows:
            lines += ([""] if lines else []) + [f"{key}:", ""] + _tables(value)
    return lines


def render(entry: dict[str, Any]) -> str:
    """The block of one benchmark: where and when it was measured (this host's CPU facts, or
    the machine an imported result names), then its result as tables (`_tables`)."""
    load = ", ".join(str(v) for v in entry.get("load_average", []))
    where = entry.get("machine") or (
        f"{entry['cpu_model']} ({entry['cores']} cores; ISA: {entry['isa'] or 'n/a'}; "
        f"load average {load or 'n/a'})")
    lines = [f"Measured {entry['date']} on {where} with `{entry['command']}`."]
    if entry.get("note"):
        lines.append(f"{entry['note']}")
    result = entry["result"]
    lines.append("")
    lines += _tables(result) if isinstance(result, dict) else [f"`{_cell(result)}`"]
    return "\n".join(lines)


def rebuild(doc_text: str, results: Path = RESULTS) -> str:
    """`doc_text` with each benchmark's block replaced by the one its JSON file gives."""
    for path in sorted(results.glob("*.json")):
        entry = json.loads(path.read_text())
        name = path.stem
        begin, end = f"<!-- BEGIN {name} (bench/measurements.py) -->", f"<!-- END {name} -->"
        block = f"{begin}\n{render(entry)}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.S)
        if pattern.search(doc_text):
            doc_text = pattern.sub(lambda _m, b=block: b, doc_text)
        else:
            doc_text = doc_text.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    return doc_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run a benchmark and keep its JSON result")
    rec.add_argument("name")
    rec.add_argument("--note", default="", help="what the reader must know about this run")
    rec.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    imp = sub.add_parser("import", help="keep a JSON result measured on another machine")
    imp.add_argument("name")
    imp.add_argument("source", type=Path, help="the JSON file the benchmark printed")
    imp.add_argument("--machine", required=True, help="where it ran, in words")
    imp.add_argument("--command", required=True, help="the command that ran there")
    imp.add_argument("--note", default="", help="what the reader must know about this run")
    reb = sub.add_parser("rebuild", help="rebuild docs/measurements.md from the JSON files")
    reb.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    for p in (rec, imp, reb):
        p.add_argument("--results", type=Path, default=RESULTS)
    reb.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    if args.action == "record":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("record: give the command after --")
        print(record(args.name, command, args.results, args.note))
        return 0
    if args.action == "import":
        print(import_result(args.name, args.source, args.machine, args.command, args.results,
                            args.note))
        return 0
    old = args.doc.read_text()
    new = rebuild(old, args.results)
    if args.check:
        if new != old:
            print(f"{args.doc} is out of date: run python bench/measurements.py rebuild")
            return 1
        return 0
    args.doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
