#!/usr/bin/env bash
# Starts a one-node SLURM cluster (slurmctld + slurmd + munged, two fake GPUs) for the SLURM
# executor's tests, installing Debian's packages first if they are missing. Idempotent: a cluster
# that is already up is left alone. Everything lives under $REPRO_SLURM_DIR (default
# /var/tmp/repro-slurm); the daemons run as root with proctrack/linuxproc and task/none, because
# cgroups are not available in every sandbox. The last line on stdout is `SLURM_CONF=<path>`;
# exit status 3 means "cannot start here" (not root, no apt), which the tests turn into a skip.
# scripts/slurm/down.sh stops the daemons by PID.
set -euo pipefail
R="${REPRO_SLURM_DIR:-/var/tmp/repro-slurm}"
CONF="$R/slurm.conf"
say() { echo "slurm-up: $*" >&2; }

conf_text() {
  cat <<CONF
ClusterName=repro-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$R/munge/munge.socket.2
StateSaveLocation=$R/state
SlurmdSpoolDir=$R/spool
SlurmctldPidFile=$R/run/slurmctld.pid
SlurmdPidFile=$R/run/slurmd.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$R/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MinJobAge=60
KillWait=5
GresTypes=gpu
# 8 CPUs whatever the machine has (config_overrides), so GPUs, not cores, limit the test jobs.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
idle() { SLURM_CONF="$CONF" timeout 5 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

if [[ -f "$CONF" ]] && [[ "$(conf_text)" == "$(cat "$CONF")" ]] && alive "$R/munge/munged.pid" && alive "$R/run/slurmctld.pid" \
  && alive "$R/run/slurmd.pid" && idle; then
  say "already up under $R"
  echo "SLURM_CONF=$CONF"
  exit 0
fi

missing=0
for tool in slurmctld slurmd sbatch squeue scancel sinfo munged; do
  command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || missing=1
done
if ((missing)); then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "cannot install slurm: needs root and apt-get (install slurmctld slurmd slurm-client munge by hand)"
    exit 3
  fi
  say "installing slurmctld slurmd slurm-client munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
if [[ "$(id -u)" != 0 ]]; then
  say "the daemons run as root here (SlurmUser=root); run this script as root"
  exit 3
fi
export PATH="$PATH:/usr/sbin:/sbin"

# Stop leftovers of a half-started cluster before starting again.
"$(dirname "$0")/down.sh" >/dev/null 2>&1 || true
mkdir -p "$R"/{state,spool,log,run,munge}
conf_text >"$CONF"
chown munge:munge "$R/munge"
chmod 755 "$R/munge" # 700 fails: munged wants execute permission for all on its socket dir
[[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || \
  (dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key); }

# Two fake GPUs: --gres scheduling and CUDA_VISIBLE_DEVICES are testable without hardware.
printf 'NodeName=localhost Name=gpu File=/dev/null\nNodeName=localhost Name=gpu File=/dev/zero\n' >"$R/gres.conf"

runuser -u munge -- /usr/sbin/munged -S "$R/munge/munge.socket.2" \
  --pid-file="$R/munge/munged.pid" --log-file="$R/munge/munged.log" --seed-file="$R/munge/munged.seed"
slurmctld -f "$CONF"
slurmd -f "$CONF" -N localhost # -N: the NodeName `localhost` is not this machine's hostname

for _ in $(seq 1 300); do
  if idle; then
    say "up under $R (logs in $R/log)"
    echo "SLURM_CONF=$CONF"
    exit 0
  fi
  sleep 0.1
done
say "the node did not become idle within 30 s; see $R/log/slurmctld.log and $R/log/slurmd.log"
exit 1
