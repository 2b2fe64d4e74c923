#!/usr/bin/env bash
# Starts a one-node SLURM on this machine, as root (shared/DESIGN.md's
# recipe): munge with a generated key, slurmctld and slurmd, no cgroups.
# Does nothing when sinfo already answers. Exit 0 when SLURM is up.
set -u
if sinfo >/dev/null 2>&1 && [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]; then exit 0; fi
host=$(hostname)
cpus=$(nproc)
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 700 /etc/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=semrep
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 30); do
  [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ] && exit 0
  scontrol update nodename="$host" state=resume >/dev/null 2>&1
  sleep 1
done
echo "SLURM did not come up; see /var/log/slurm" >&2
exit 1
