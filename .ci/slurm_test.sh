#!/usr/bin/env bash
# CI: config/test.yaml through a real single-node SLURM cluster (profiles/slurm), against a local
# run of the same config. Fresh Debian, as root. Installs slurm-wlm and munge, starts munged,
# slurmctld and slurmd on localhost with every file (config, state, logs, munge socket) under one
# scratch directory, stops what it started on exit. Time-bounded: the two runs together get
# ALKAPPA_SLURM_TIMEOUT seconds (default 1200). ALKAPPA_SLURM_LOCAL_RESULTS: the results of a
# finished local run of config/test.yaml to compare with, instead of making one here.
# ALKAPPA_SLURM_TARGET: `al` (default) runs the first active-learning iteration of
# config/test.yaml (training, exploration, both checkpoints, a labelling batch and the merge),
# `loop` the whole AL loop (19 SLURM jobs, 5.5 minutes on 2 cores), `all` the whole campaign
# (33 SLURM jobs, 8.5 minutes: too long for CI's 20-minute budget).
#
#   .ci/slurm_test.sh                  # uses .venv/bin (created by `make test`)
#   BIN=/path/to/venv/bin .ci/slurm_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/.venv/bin}
TIMEOUT=${ALKAPPA_SLURM_TIMEOUT:-1200}
WORK=$(mktemp -d /tmp/alkappa-slurm.XXXXXX)
echo "slurm test: scratch $WORK"

if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

cleanup() {
    # only the daemons this script started, by their pid files; wait until they are gone
    local pids=()
    for pidfile in "$WORK"/slurmd.pid "$WORK"/slurmctld.pid "$WORK"/munged.pid; do
        [[ -s $pidfile ]] && pids+=("$(cat "$pidfile")")
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 20); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.5
    done
}
trap cleanup EXIT

# munge: its own key, socket and pid file in the scratch dir (no system service touched)
mkdir -p "$WORK/munge" "$WORK/spool" "$WORK/state"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$WORK/munge"
chmod 400 "$WORK/munge/munge.key"
munged --force --key-file="$WORK/munge/munge.key" --socket="$WORK/munge/socket" \
    --pid-file="$WORK/munged.pid" --log-file="$WORK/munged.log" --seed-file="$WORK/munge/seed"

HOST=$(hostname -s)
NODE=$(slurmd -C | head -n1)  # NodeName=<host> CPUs=... RealMemory=...
export SLURM_CONF=$WORK/slurm.conf  # sbatch, squeue and the jobs' srun all read it
cat >"$SLURM_CONF" <<EOF
ClusterName=alkappa-ci
SlurmctldHost=$HOST
SlurmctldPort=${ALKAPPA_SLURMCTLD_PORT:-6817}
SlurmdPort=${ALKAPPA_SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
$NODE State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# Snakemake's job-step executor runs each rule with srun inside the SLURM job and drops every
# SLURM_* variable from srun's environment (SLURM_CONF too); srun would then look for
# /etc/slurm/slurm.conf. A wrapper first in PATH (jobs inherit PATH) gives it our config.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" \
    >"$WORK/bin/srun"
chmod +x "$WORK/bin/srun"
export PATH=$WORK/bin:$PATH
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix)' && break
    sleep 1
done
sinfo

# The profile as users have it, except memory: a CI node may have less than the profile's
# production requests (the command-line resources replace the profile's lists).
# one config, two results directories: the local run and the SLURM run
make_config() {
    "$BIN/python" - "$1" "$2" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open("config/test.yaml"))
cfg["results"] = sys.argv[2]
yaml.safe_dump(cfg, open(sys.argv[1], "w"))
EOF
}
make_config "$WORK/local.yaml" "$WORK/local"
make_config "$WORK/slurm.yaml" "$WORK/slurm"
START=$SECONDS

LOCAL=$WORK/local
if [[ -n ${ALKAPPA_SLURM_LOCAL_RESULTS:-} ]]; then
    # a finished local run of config/test.yaml (.ci/run passes the test suite's) saves minutes
    LOCAL=$ALKAPPA_SLURM_LOCAL_RESULTS
else
    echo "slurm test: local run"
    OMP_NUM_THREADS=1 timeout "$TIMEOUT" "$BIN/snakemake" --profile profiles/default \
        --cores 2 --configfile "$WORK/local.yaml" >"$WORK/local.log" 2>&1 ||
        { tail -n 50 "$WORK/local.log"; exit 1; }
    echo "slurm test: local run done in $((SECONDS - START)) s"
fi

TARGET=${ALKAPPA_SLURM_TARGET:-al}
case $TARGET in
    al) TARGETS=(Cu/al/iter_1/dataset.extxyz) ;;
    loop) TARGETS=(Cu/al/summary.csv) ;;
    all) TARGETS=() ;;
    *) echo "ALKAPPA_SLURM_TARGET must be al, loop or all, not '$TARGET'"; exit 2 ;;
esac
echo "slurm test: SLURM run (${TARGET})"
LEFT=$((TIMEOUT - (SECONDS - START)))
OMP_NUM_THREADS=1 timeout "$LEFT" "$BIN/snakemake" "${TARGETS[@]/#/$WORK/slurm/}" \
    --profile profiles/slurm --jobs 4 \
    --configfile "$WORK/slurm.yaml" --max-status-checks-per-second 1 \
    --slurm-no-account --slurm-status-command squeue \
    --slurm-init-seconds-before-status-checks 3 --slurm-keep-successful-logs \
    --slurm-logdir "$WORK/slurm-logs" \
    --default-resources "mem_mb=1000*attempt" "runtime=30*attempt" \
    --set-resources "kappa:mem_mb=1000*attempt" \
    >"$WORK/slurm.log" 2>&1 || { tail -n 80 "$WORK/slurm.log"; exit 1; }
echo "slurm test: SLURM run done, $((SECONDS - START)) s after the start of the runs"

# jobs went through SLURM, and the results equal the local run's
grep -m 5 "submitted with SLURM jobid" "$WORK/slurm.log" || true
squeue --states=all -h -o '%i %j %T' >"$WORK/squeue.txt"
"$BIN/python" .ci/compare_slurm_run.py --local "$LOCAL" --slurm "$WORK/slurm" \
    --log "$WORK/slurm.log" --slurm-logs "$WORK/slurm-logs" --squeue "$WORK/squeue.txt" \
    --slurmctld-log "$WORK/slurmctld.log" "${TARGETS[@]/#/--target=}"
# stop the daemons before their pid files go with the scratch directory
cleanup
trap - EXIT
rm -rf "$WORK"
