#!/usr/bin/env bash
# A private one-node SLURM for the tests, as root: its own munged, slurmctld
# and slurmd, with every file they use (conf, munge key and socket, state,
# spool, pid files, logs) under DIR and on ports that were free when it
# started. It never reads or writes /etc/slurm, /etc/munge or /var, never
# uses the default ports, and never uses a SLURM it did not start: the
# commands reach it through SLURM_CONF=DIR/slurm.conf alone.
#   start_slurm.sh start DIR   exit 0 once its node is idle
#   start_slurm.sh stop DIR    cancels every job it holds, waits for them to
#                              end, stops its three daemons (by their pid
#                              files) and waits for them to exit
set -u
action=${1:-} dir=${2:-}
if [ -z "$dir" ] || { [ "$action" != start ] && [ "$action" != stop ]; }; then
  echo "usage: start_slurm.sh start|stop DIR" >&2
  exit 2
fi
export SLURM_CONF=$dir/slurm.conf
pid_of() { [ -s "$dir/$1.pid" ] && cat "$dir/$1.pid"; }

# stop_daemon NAME: TERM, then KILL after 10 s; only the pid this DIR recorded
stop_daemon() {
  local pid
  pid=$(pid_of "$1") || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "$1 ($pid) did not stop on TERM; killing it" >&2
  kill -9 "$pid" 2>/dev/null
}

if [ "$action" = stop ]; then
  if [ -n "$(pid_of slurmctld)" ] && kill -0 "$(pid_of slurmctld)" 2>/dev/null; then
    # cancel every job (a failed afterok chain leaves its later jobs pending)
    # and wait for the running ones' steps to end before slurmd goes
    scancel --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done
    left=$(squeue -h 2>/dev/null | wc -l)
    [ "$left" = 0 ] || echo "$left job(s) still listed after 60 s; stopping the daemons anyway" >&2
  fi
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon munged
  exit 0
fi

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" || exit 1
chmod 700 "$dir" "$dir/munge"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
socket=$dir/munge/socket
# --force: munged refuses root, and /tmp's permissions, without it
/usr/sbin/munged --force --socket="$socket" --key-file="$dir/munge/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" || { echo "munged did not start" >&2; exit 1; }

# two ports free now (the kernel's choice), for slurmctld and slurmd
read -r ctld_port slurmd_port < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
host=$(hostname)
cat >"$SLURM_CONF" <<CONF
ClusterName=semrep-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
DependencyParameters=kill_invalid_depend
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
# -c: a cold start, no state from anywhere
/usr/sbin/slurmctld -c -f "$SLURM_CONF" || { echo "slurmctld did not start; see $dir/log" >&2; exit 1; }
/usr/sbin/slurmd -f "$SLURM_CONF" || { echo "slurmd did not start; see $dir/log" >&2; exit 1; }
for _ in $(seq 1 30); do
  [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ] && exit 0
  scontrol update nodename="$host" state=resume >/dev/null 2>&1
  sleep 1
done
echo "SLURM did not come up; see $dir/log" >&2
exit 1
