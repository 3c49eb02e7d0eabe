"""bench/measurements.py: a benchmark's JSON result is recorded with its date and CPU, and the
tables of docs/measurements.md are rebuilt from the JSON files (and the shipped page is)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = str(REPO / "bench" / "measurements.py")


def _run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_record_keeps_the_result_with_date_and_cpu(tmp_path):
    printer = "import json; print(json.dumps({'fp32': 1.0, 'bnn': 1.25}))"
    proc = _run("record", "--results", str(tmp_path), "--note", "a note", "toy", "--",
                sys.executable, "-c", printer)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "toy.json").read_text())
    assert entry["result"] == {"fp32": 1.0, "bnn": 1.25}
    assert entry["benchmark"] == "toy" and entry["note"] == "a note"
    assert entry["date"].startswith("20") and entry["date"].endswith("Z")
    assert entry["cpu_model"] and entry["cores"] >= 1 and len(entry["load_average"]) == 3


def test_record_refuses_output_that_is_not_json(tmp_path):
    proc = _run("record", "--results", str(tmp_path), "toy", "--", sys.executable, "-c",
                "print('1.25x')")
    assert proc.returncode != 0 and "pass --json" in proc.stderr
    assert not (tmp_path / "toy.json").exists()


def test_import_keeps_a_result_from_another_machine_with_that_machine(tmp_path):
    source = tmp_path / "device" / "out.json"
    source.parent.mkdir()
    source.write_text(json.dumps({"fp32": {"step_ms": 14.6}}))
    proc = _run("import", "--results", str(tmp_path), "gpu_toy", str(source),
                "--machine", "1x Fake GPU", "--command", "python bench/x.py --device cuda")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "gpu_toy.json").read_text())
    assert entry["machine"] == "1x Fake GPU" and "cpu_model" not in entry
    assert entry["result"] == {"fp32": {"step_ms": 14.6}}
    doc = tmp_path / "m.md"
    doc.write_text("# M\n")
    assert _run("rebuild", "--results", str(tmp_path), "--doc", str(doc)).returncode == 0
    assert "on 1x Fake GPU with `python bench/x.py --device cuda`." in doc.read_text()
    (source.parent / "bad.json").write_text("not json")
    proc = _run("import", "--results", str(tmp_path), "bad", str(source.parent / "bad.json"),
                "--machine", "m", "--command", "c")
    assert proc.returncode != 0 and "no JSON result" in proc.stderr


def test_rebuild_replaces_the_blocks_and_keeps_the_prose(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    base = {"date": "2026-01-02T03:04Z", "cpu_model": "Some CPU", "isa": "avx2", "cores": 2,
            "load_average": [0.5, 0.4, 0.3], "command": "python bench/x.py --json"}
    (results / "speed.json").write_text(json.dumps({**base, "result": {
        "bnn": {"ms": 1.23456, "ok": True}, "xnor": {"ok": False, "reason": "a|b"}}}))
    (results / "plan.json").write_text(json.dumps({**base, "result": {"seconds": 2.5}}))
    doc = tmp_path / "m.md"
    doc.write_text("# M\n\nHow to measure.\n\n<!-- BEGIN speed (bench/measurements.py) -->\n"
                   "an old table\n<!-- END speed -->\n\nMore prose.\n")
    assert _run("rebuild", "--check", "--results", str(results), "--doc", str(doc)
                ).returncode == 1
    assert _run("rebuild", "--results", str(results), "--doc", str(doc)).returncode == 0
    measured = ("Measured 2026-01-02T03:04Z on Some CPU (2 cores; ISA: avx2; load average 0.5, "
                "0.4, 0.3) with `python bench/x.py --json`.\n\n")
    assert doc.read_text() == (
        "# M\n\nHow to measure.\n\n<!-- BEGIN speed (bench/measurements.py) -->\n" + measured
        + "| | ms | ok | reason |\n|---|---|---|---|\n| bnn | 1.235 | yes |  |\n"
        "| xnor |  | no | a\\|b |\n<!-- END speed -->\n\nMore prose.\n\n## plan\n\n"
        "<!-- BEGIN plan (bench/measurements.py) -->\n" + measured
        + "| | value |\n|---|---|\n| seconds | 2.5 |\n<!-- END plan -->\n")
    assert _run("rebuild", "--check", "--results", str(results), "--doc", str(doc)
                ).returncode == 0


def test_the_shipped_page_is_rebuilt_from_the_shipped_results():
    proc = _run("rebuild", "--check")
    assert proc.returncode == 0, proc.stdout
    assert list((REPO / "bench" / "results").glob("*.json"))
