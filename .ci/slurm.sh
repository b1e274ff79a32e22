#!/usr/bin/env bash
# A one-host SLURM for the `slurm` tests: munged, slurmctld and slurmd from Debian's packages (slurm-wlm, munge),
# started as root with every file under one folder. Installs nothing; idempotent.
#   .ci/slurm.sh start    start it (or find it running) and wait until `srun -n1 true` works
#   .ci/slurm.sh status   exit 0 when it answers
#   .ci/slurm.sh stop     stop its daemons; the folder stays for the logs
# The folder is $ABLATE_SLURM_DIR, by default /tmp/ablate-slurm; commands use its slurm.conf through
# SLURM_CONF=<folder>/slurm.conf (tests/conftest.py sets it when it finds the cluster up).
# No accounting (slurmdbd): ablate reads how runs ended from their records, not from sacct.
set -euo pipefail

DIR=${ABLATE_SLURM_DIR:-/tmp/ablate-slurm}
export SLURM_CONF=$DIR/slurm.conf
HOST=$(hostname -s)
SOCKET=$DIR/munge.socket

say() { echo "slurm.sh: $*" >&2; }

answers() {
    [ -f "$SLURM_CONF" ] && timeout 10 sinfo -h -n "$HOST" -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

write_config() {
    mkdir -p "$DIR"/{state,spool,log}
    local cpus mem_mb
    cpus=$(nproc)
    # All but a tenth of the host's memory: slurmd drains a node that has less than its RealMemory.
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$SLURM_CONF" <<EOF
ClusterName=ablate-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups: processes tracked by parent pid, tasks not bound (containers often lack a writable cgroup tree).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# A node that stopped answering comes back when its slurmd answers again; one set down by hand stays down until
# resumed (scontrol update nodename=... state=resume), as on a real cluster.
ReturnToService=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=10
Waittime=0
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if munge -n -S "$SOCKET" >/dev/null 2>&1; then return; fi
    local key=/etc/munge/munge.key
    if [ ! -r "$key" ]; then
        key=$DIR/munge.key
        [ -f "$key" ] || mungekey --create --keyfile="$key"
    fi
    # --force: munged refuses root, and a key it does not own, without it.
    munged --force --socket="$SOCKET" --key-file="$key" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed"
}

running() {  # running PIDFILE; a zombie (a container whose init reaps no orphans) counts as stopped
    local pid
    [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null && ! ps -o stat= -p "$pid" | grep -q '^Z'
}

start() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null \
        || { say "slurm-wlm and munge are not installed (apt-get install slurm-wlm munge)"; exit 1; }
    if answers; then say "up ($SLURM_CONF)"; return; fi
    write_config
    start_munge
    running "$DIR/slurmctld.pid" || slurmctld
    running "$DIR/slurmd.pid" || slurmd
    for _ in $(seq 60); do
        if answers; then
            timeout 30 srun -n1 -t 1 true || { say "srun -n1 true failed; logs: $DIR/log"; exit 1; }
            say "up ($SLURM_CONF)"
            return
        fi
        # A node left down or drained by an earlier run (e.g. a test that set it down) is taken back.
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    say "no idle node after 30 s; logs: $DIR/log"
    exit 1
}

stop() {
    local f
    for f in slurmd slurmctld munged; do
        if running "$DIR/$f.pid"; then kill "$(cat "$DIR/$f.pid")"; fi
    done
    for _ in $(seq 40); do
        running "$DIR/slurmd.pid" || running "$DIR/slurmctld.pid" || running "$DIR/munged.pid" || return 0
        sleep 0.25
    done
    say "daemons still running after 10 s"
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if answers; then say "up ($SLURM_CONF)"; else say "not up"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
