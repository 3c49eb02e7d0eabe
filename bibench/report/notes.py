"""A report job that fails never leaves the user without a report, nor without knowing why.

Snakemake deletes the outputs of a failed job, so each success links the new report to
report.last-good.html too, and the note report.FAILED.txt, written when the job starts (a job
killed before it ends leaves it as well) and rewritten with the error if it fails, says what
failed and where the last good report is; a success removes it. `bibench status` reads the
same note.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bibench.io import atomic_write


@contextmanager
def keeping_the_last_good_report(html: str | Path) -> Iterator[None]:
    """Around the rendering of `html`: the note while it runs, the error if it fails, the
    last good report when it succeeds."""
    note, last_good = report_notes(html)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    _report_note(note, last_good, html,
                 f"the report job started {started} has not finished (it failed or was killed)")
    try:
        yield
    except BaseException as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _report_note(note, last_good, html, f"the report job started {started} failed: "
                                            f"{type(err).__name__}{': ' if problem else ''}"
                                            f"{problem}")
        raise
    _link_or_copy(html, last_good)
    note.unlink(missing_ok=True)


def report_notes(html: str | Path) -> tuple[Path, Path]:
    """The note a report job that did not finish leaves beside `html` and the last good report
    it keeps (results/report.FAILED.txt, results/report.last-good.html): files that Snakemake
    does not delete when the job fails."""
    html = Path(html)
    return html.with_name(f"{html.stem}.FAILED.txt"), html.with_name(f"{html.stem}.last-good.html")


def _report_note(note: Path, last_good: Path, html: str | Path, what: str) -> None:
    if last_good.exists():
        made = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_good.stat().st_mtime))
        kept = f"The last good report, made {made}, is {last_good}."
    else:
        kept = "There is no earlier report."
    text = (f"REPORT NOT UPDATED: {what}.\n"
            f"{html} is not there: Snakemake deletes the outputs of a failed job. {kept}\n"
            f"The job's log (logs/report.log) says why; the next snakemake run makes the "
            f"report again, and removes this note when it succeeds.\n")
    atomic_write(note, lambda tmp: Path(tmp).write_text(text))


def _link_or_copy(source: str | Path, target: Path) -> None:
    """`target` becomes `source`'s content: a hard link (no space used) or else a copy."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)
