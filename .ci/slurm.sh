#!/usr/bin/env bash
# A one-host SLURM for the `slurm` tests: munged, slurmctld and slurmd from Debian's packages (slurm-wlm, munge),
# started as root with every file under one folder. Installs nothing; idempotent. Two nodes: this host, in the
# default partition `debug`, and a second slurmd on the same host named `localhost` (a name that resolves here, as
# a rendezvous address must), with this host in the partition `two`, where a job can span two nodes (nodes=2).
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
# The second node's name; none on a host that is itself called localhost.
SECOND=localhost
[ "$HOST" != "$SECOND" ] || SECOND=""
NODES=$HOST${SECOND:+,$SECOND}

say() { echo "slurm.sh: $*" >&2; }

answers() {  # every node up
    [ -f "$SLURM_CONF" ] && [ "$(timeout 10 sinfo -h -N -n "$NODES" -o '%N %t' 2>/dev/null | sort -u |
        grep -Ec ' (idle|mix|alloc)$')" = "$(tr , '\n' <<< "$NODES" | wc -l)" ]
}

write_config() {  # to stdout
    local cpus mem_mb
    cpus=$(nproc)
    # All but a tenth of the host's memory: slurmd drains a node that has less than its RealMemory.
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat <<EOF
ClusterName=ablate-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
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
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN Port=6818
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    # Its own port; it shares this host's cores and memory with the first.
    [ -z "$SECOND" ] || cat <<EOF
NodeName=$SECOND NodeHostname=$HOST NodeAddr=127.0.0.1 Port=6819 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=two Nodes=$NODES MaxTime=INFINITE State=UP
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
    mkdir -p "$DIR"/{state,spool,log}
    local config
    config=$(write_config)
    # A cluster of another config (an older version of this script) is stopped first: slurmctld reads nodes at start.
    if [ "$config" != "$(cat "$SLURM_CONF" 2>/dev/null)" ]; then
        stop
        echo "$config" >"$SLURM_CONF"
    fi
    start_munge
    running "$DIR/slurmctld.pid" || slurmctld
    running "$DIR/slurmd.$HOST.pid" || slurmd
    [ -z "$SECOND" ] || running "$DIR/slurmd.$SECOND.pid" || slurmd -N "$SECOND"
    for _ in $(seq 60); do
        if answers; then
            timeout 30 srun -n1 -t 1 true || { say "srun -n1 true failed; logs: $DIR/log"; exit 1; }
            say "up ($SLURM_CONF)"
            return
        fi
        # A node left down or drained by an earlier run (e.g. a test that set it down) is taken back.
        scontrol update nodename="$NODES" state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    say "no idle node after 30 s; logs: $DIR/log"
    exit 1
}

stop() {
    local f pids=("$DIR"/slurmd*.pid "$DIR/slurmctld.pid" "$DIR/munged.pid")
    for f in "${pids[@]}"; do
        if running "$f"; then kill "$(cat "$f")"; fi
    done
    for _ in $(seq 40); do
        for f in "${pids[@]}"; do
            if running "$f"; then sleep 0.25; continue 2; fi
        done
        return 0
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
