#!/usr/bin/env bash
# Start a single-node SLURM cluster on this host, for tests (tests/test_slurm.py) and for trying
# profiles/slurm without a real cluster. Everything lives under one state directory; nothing in
# /etc is touched and no systemd is needed (the daemons are started directly, as root).
#
#   .ci/slurm/start.sh            start (or confirm it is already running); prints env to export
#   .ci/slurm/stop.sh             stop exactly the daemons this script started
#
# Environment:
#   BIBENCH_SLURM_DIR       state directory (default /tmp/bibench-slurm)
#   BIBENCH_SLURM_PORTS     "CTLD_PORT SLURMD_PORT" (default "16817 16818", away from a system
#                           SLURM's 6817/6818)
#   BIBENCH_SLURM_PARTITION partition name (default "debug")
#
# The cluster: one node with this host's real CPU count and memory (`slurmd -C`), one partition,
# no accounting (so `sacct` does not work: use `--slurm-status-command squeue`), MinJobAge of one
# day so that `squeue --states=all` still lists finished and cancelled jobs, no cgroups
# (proctrack/linuxproc, task/none: works inside containers). Client commands must see the
# config: export SLURM_CONF="$BIBENCH_SLURM_DIR/slurm.conf" (printed at the end).
set -euo pipefail

DIR="${BIBENCH_SLURM_DIR:-/tmp/bibench-slurm}"
read -r CTLD_PORT SLURMD_PORT <<<"${BIBENCH_SLURM_PORTS:-16817 16818}"
PARTITION="${BIBENCH_SLURM_PARTITION:-debug}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
# the daemons live in /usr/sbin, which a non-login shell's PATH may lack
export PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "start.sh: error: $*" >&2
    exit 1
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "'$tool' not found. Install SLURM and munge first, e.g." \
                "'apt-get install -y slurm-wlm munge' (Debian/Ubuntu)."
    done
}

# pid recorded in $1 belongs to a live process named $2
alive() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$name" ]]
}

# wait until command "$@" succeeds, at most $TIMEOUT seconds
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + ${TIMEOUT:-30}))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    [[ -n $what ]] && echo "start.sh: $what"
    return 0
}

show_log() {
    echo "--- last lines of $1:" >&2
    tail -n 20 "$1" >&2 2>/dev/null || true
}

[[ $(id -u) -eq 0 ]] || die "must run as root (slurmd starts jobs as their user)."
need munged munge unmunge slurmctld slurmd sinfo scontrol sbatch squeue

mkdir -p "$DIR"/{munge,state,spool,log}
chmod 0700 "$DIR/munge"
chmod 0755 "$DIR" "$DIR/state" "$DIR/spool" "$DIR/log"

# Job steps must find the config without SLURM_CONF: snakemake-executor-plugin-slurm-jobstep
# removes every SLURM_* variable but the job's identity before it calls `srun` inside a job, so
# `srun` falls back to the default path. Link it there (first: before any daemon starts),
# unless a real config is in the way.
ETC_CONF=/etc/slurm/slurm.conf
if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    :
elif [[ -L $ETC_CONF ]] && { [[ ! -e $ETC_CONF ]] ||
        head -n 1 "$ETC_CONF" | grep -q '^# Written by .ci/slurm/start.sh'; }; then
    # a link left by an earlier test cluster of this script (killed before stop.sh ran)
    ln -sfn "$CONF" "$ETC_CONF"
    echo "$ETC_CONF" >"$DIR/etc-link"
    echo "start.sh: relinked $ETC_CONF (left by an earlier test cluster) -> $CONF"
elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    die "$ETC_CONF exists and is not this test cluster's: job steps (srun inside a job) would" \
        "use it. On a host with its own SLURM, use that cluster instead of this script."
else
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
    echo "$ETC_CONF" >"$DIR/etc-link"
    echo "start.sh: linked $ETC_CONF -> $CONF"
fi

# --- munge -------------------------------------------------------------------------------------
KEY="$DIR/munge/munge.key"
SOCKET="$DIR/munge/munge.socket"
if [[ ! -s $KEY ]]; then
    echo "start.sh: creating munge key $KEY"
    (umask 077 && dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none)
fi
chmod 0600 "$KEY"
if alive "$DIR/munge/munged.pid" munged; then
    echo "start.sh: munged already running (pid $(<"$DIR/munge/munged.pid"))"
else
    rm -f "$SOCKET" "$SOCKET.lock"
    # --force: munged refuses to run as root otherwise; it only talks to local clients here
    munged --force --socket="$SOCKET" --key-file="$KEY" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" ||
        { show_log "$DIR/log/munged.log"; die "munged did not start."; }
    TIMEOUT=10 wait_for "" bash -c "munge --socket='$SOCKET' -n | unmunge --socket='$SOCKET'" ||
        { show_log "$DIR/log/munged.log"; die "munged does not answer on $SOCKET."; }
    echo "start.sh: munged started (pid $(<"$DIR/munge/munged.pid"))"
fi

# --- slurm.conf --------------------------------------------------------------------------------
NODE=$(hostname -s)
# "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=N"
HW=$(slurmd -C | head -n 1) || die "'slurmd -C' failed: cannot detect this host's hardware."
HW=${HW#NodeName=* }
[[ $HW == CPUs=* && $HW == *RealMemory=* ]] || die "unexpected 'slurmd -C' output: $HW"

cat >"$CONF.new" <<EOF
# Written by .ci/slurm/start.sh: a single-node test cluster, state under $DIR.
ClusterName=bibench
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in containers without cgroup delegation
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no accounting database: sacct does not work, squeue is the status command
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# keep finished and cancelled jobs visible to 'squeue --states=all' for a day
MinJobAge=86400
MaxJobCount=100000
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 $HW State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"

# --- daemons -----------------------------------------------------------------------------------
if alive "$DIR/slurmctld.pid" slurmctld; then
    echo "start.sh: slurmctld already running (pid $(<"$DIR/slurmctld.pid")); reconfiguring"
    scontrol reconfigure || die "slurmctld runs but does not answer 'scontrol reconfigure'."
else
    # -i: ignore state files from an earlier, different configuration
    slurmctld -f "$CONF" -i ||
        { show_log "$DIR/log/slurmctld.log"; die "slurmctld did not start."; }
    wait_for "" scontrol ping ||
        { show_log "$DIR/log/slurmctld.log"; die "slurmctld does not answer 'scontrol ping'."; }
    echo "start.sh: slurmctld started (pid $(<"$DIR/slurmctld.pid"))"
fi
if alive "$DIR/slurmd.pid" slurmd; then
    echo "start.sh: slurmd already running (pid $(<"$DIR/slurmd.pid"))"
else
    slurmd -f "$CONF" -N "$NODE" || { show_log "$DIR/log/slurmd.log"; die "slurmd did not start."; }
    TIMEOUT=10 wait_for "" alive "$DIR/slurmd.pid" slurmd ||
        { show_log "$DIR/log/slurmd.log"; die "slurmd exited; see $DIR/log/slurmd.log."; }
    echo "start.sh: slurmd started (pid $(<"$DIR/slurmd.pid"))"
fi

node_idle() {
    [[ $(sinfo --noheader --nodes="$NODE" --partition="$PARTITION" --format=%t) == idle ]]
}
if ! TIMEOUT=60 wait_for "node $NODE is idle in partition $PARTITION" node_idle; then
    # a node left DOWN/DRAINED by an earlier run of this script: resume it once
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    TIMEOUT=30 wait_for "node $NODE is idle in partition $PARTITION (resumed)" node_idle || {
        sinfo --long --Node >&2 || true
        show_log "$DIR/log/slurmd.log"
        show_log "$DIR/log/slurmctld.log"
        die "node $NODE did not become idle; see the logs under $DIR/log."
    }
fi

echo "export SLURM_CONF=$CONF"
