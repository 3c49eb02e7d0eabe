#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm/start.sh: exactly the daemons whose
# pids it recorded under the state directory (slurmd, slurmctld, munged), nothing found by name.
# Idempotent: daemons that are not running are skipped. Jobs still running are cancelled first.
#
#   BIBENCH_SLURM_DIR   state directory (default /tmp/bibench-slurm), as for start.sh
#   --purge             also delete the state directory (config, logs, job state, munge key)
set -euo pipefail

DIR="${BIBENCH_SLURM_DIR:-/tmp/bibench-slurm}"
PURGE=0
for arg in "$@"; do
    case $arg in
    --purge) PURGE=1 ;;
    *)
        echo "stop.sh: error: unknown argument '$arg' (only --purge)" >&2
        exit 2
        ;;
    esac
done

# pid recorded in $1, if it belongs to a live process named $2
recorded_pid() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$name" ]] || return 1
    echo "$pid"
}

stop() {
    local pidfile=$1 name=$2 pid i
    if ! pid=$(recorded_pid "$pidfile" "$name"); then
        echo "stop.sh: $name is not running"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid"
    for ((i = 0; i < 40; i++)); do
        [[ -e /proc/$pid ]] || break
        sleep 0.25
    done
    if [[ -e /proc/$pid ]]; then
        echo "stop.sh: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stop.sh: stopped $name (pid $pid)"
    rm -f "$pidfile"
}

if [[ ! -d $DIR ]]; then
    echo "stop.sh: no state directory $DIR: nothing to stop"
    exit 0
fi

if [[ -f $DIR/slurm.conf ]] && recorded_pid "$DIR/slurmctld.pid" slurmctld >/dev/null; then
    # cancel this cluster's jobs so that no job step outlives slurmd
    export SLURM_CONF="$DIR/slurm.conf"
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        [[ -z $(squeue --noheader --states=PENDING,RUNNING,COMPLETING,CONFIGURING \
            --format=%i 2>/dev/null) ]] && break
        sleep 0.25
    done
fi
stop "$DIR/slurmd.pid" slurmd
stop "$DIR/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged

# the /etc/slurm/slurm.conf link start.sh made, if it still points to this cluster's config
if [[ -s $DIR/etc-link ]]; then
    link=$(<"$DIR/etc-link")
    if [[ -L $link && $(readlink "$link") == "$DIR/slurm.conf" ]]; then
        rm -f "$link"
        echo "stop.sh: removed link $link"
    fi
    rm -f "$DIR/etc-link"
fi

if ((PURGE)); then
    rm -rf "$DIR"
    echo "stop.sh: removed $DIR"
fi
