"""Which bibench timing windows overlapped: a machine-wide registry of the live ones.

A latency row is a same-run ratio, but two bibench runs in one folder (after `snakemake
--unlock` while a run is live) or in two folders time on the same cores at the same second,
and each would serve the other's interference as its own number. Every latency row therefore
times inside a `TimingWindow`: a file in the registry directory, held under an exclusive
`flock` for as long as the window is open. The lock, not the process id, says who is alive: the
kernel drops it when the process ends, however it ends, so an entry left by a killed job
(`kill -9`) is recognised as dead, ignored and removed.

A window is contended when another window on the same device was open at any moment of it:

- opening, it looks at every live entry (one open now overlaps it) and appends a note to each
  ("a window of mine was open beside yours"), so a window that opens and closes inside a longer
  one is known to the longer one too;
- closing, it looks again at the live entries and reads the notes others appended to its own.

The registry is `$BIBENCH_TIMING_DIR` when set, else `<temp dir>/bibench-timing` (sticky and
world-writable like /tmp, so every user's jobs on the machine share it; a per-user folder where
that one cannot be used). A node whose jobs each get a private /tmp (some SLURM setups) needs
`BIBENCH_TIMING_DIR` on a local path all jobs see. Like timing.py this imports no other bibench
module.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REGISTRY_ENV = "BIBENCH_TIMING_DIR"
_PREFIX = "window-"


def registry_dir() -> Path:
    """The folder of the machine's timing windows (created when missing)."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    shared = Path(tempfile.gettempdir()) / "bibench-timing"
    try:
        try:
            shared.mkdir()
            os.chmod(shared, 0o1777)  # every user's jobs register here (sticky, as /tmp)
        except FileExistsError:
            pass
        if shared.is_dir() and not shared.is_symlink() and os.access(shared, os.W_OK | os.X_OK):
            return shared
    except OSError:
        pass
    own = Path(tempfile.gettempdir()) / f"bibench-timing-{os.getuid()}"
    own.mkdir(mode=0o700, exist_ok=True)
    return own


def load_average() -> float:
    """The machine's 1-minute load average (NaN where the OS does not give one)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return math.nan


def describe(entry: dict[str, Any]) -> str:
    """One overlapping window in words: its process and what it timed."""
    what = f" timing {entry['label']}" if entry.get("label") else ""
    host = entry.get("host", "")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {entry.get('pid', '?')}{where}{what}"


class TimingWindow:
    """`with TimingWindow(device, label) as w: <time>`; afterwards `w.overlaps` lists the other
    windows on `device` open at some moment of this one (empty: nothing else timed beside it),
    `w.load_start` / `w.load_end` the load average at its start and end, and `w.checked` is
    False where the registry could not be used (then nothing is known about other jobs)."""

    def __init__(self, device: str, label: str = "", directory: str | Path | None = None
                 ) -> None:
        self.device, self.label = device, label
        self.directory = Path(directory) if directory is not None else None
        self.overlaps: list[dict[str, Any]] = []
        self.checked = False
        self.load_start = self.load_end = math.nan
        self._fd: int | None = None
        self._path: Path | None = None
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}

    def __enter__(self) -> TimingWindow:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _header(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": self.device,
                "label": self.label, "start": self.start}

    def open(self) -> None:
        self.load_start = load_average()
        self.start = time.time()
        try:
            directory = self.directory or registry_dir()
            fd, tmp = tempfile.mkstemp(prefix=".new-", dir=directory)  # scans skip dot files
        except OSError as err:
            log.warning("timing registry unusable (%s): concurrent bibench timing is not "
                        "checked", err)
            return
        try:
            os.fchmod(fd, 0o666)  # other users' windows append their notes
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (json.dumps(self._header()) + "\n").encode())
            path = directory / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
            os.rename(tmp, path)  # appears already locked: never mistaken for a dead entry
        except OSError as err:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            log.warning("timing registry unusable (%s): concurrent bibench timing is not "
                        "checked", err)
            return
        self._fd, self._path, self.checked = fd, path, True
        note = (json.dumps(self._header()) + "\n").encode()
        for entry in self._live_others(directory, note):
            self._add(entry)

    def close(self) -> None:
        if self._fd is not None and self._path is not None:
            for entry in self._live_others(self._path.parent, None):
                self._add(entry)
            os.lseek(self._fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(self._fd, 65536):
                chunks.append(chunk)
            for line in b"".join(chunks).decode(errors="replace").splitlines()[1:]:
                entry = _parse(line)
                if entry is not None and entry.get("device") == self.device:
                    self._add(entry)
            self._path.unlink(missing_ok=True)  # first: an unlocked entry is a dead one
            os.close(self._fd)
            self._fd = None
        self.load_end = load_average()
        self.overlaps = sorted(self._seen.values(), key=lambda e: e.get("start", 0))

    def _add(self, entry: dict[str, Any]) -> None:
        key = (entry.get("host"), entry.get("pid"), entry.get("start"))
        self._seen.setdefault(key, entry)

    def _live_others(self, directory: Path, note: bytes | None) -> list[dict[str, Any]]:
        """Headers of the other live windows on this device (dead entries removed); with
        `note`, appended to each of them."""
        live = []
        for path in sorted(directory.glob(f"{_PREFIX}*")):
            if path == self._path:
                continue
            entry = _probe(path, note, self.device)
            if entry is not None:
                live.append(entry)
        return live


def _parse(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _probe(path: Path, note: bytes | None, device: str) -> dict[str, Any] | None:
    """The header of a live window on `device` (after appending `note` to it), else None; an
    entry nobody holds any more (its process died) is removed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
    except OSError:  # gone meanwhile (its window closed), or not a plain file
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: its window is open now
            entry = _parse(os.pread(fd, 65536, 0).decode(errors="replace").split("\n", 1)[0])
            if entry is None or entry.get("device") != device:
                return None
            if note is not None:
                try:
                    os.write(fd, note)
                except OSError:  # read-only for us: it sees this window when it closes
                    pass
            return entry
        try:  # nobody holds it: its process ended without closing the window
            path.unlink()
        except OSError:
            pass
        return None
    finally:
        os.close(fd)
