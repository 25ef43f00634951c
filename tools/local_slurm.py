#!/usr/bin/env python3
"""A real one-node SLURM "cluster" on this machine, for the SLURM tests and for trying the cluster
profile locally (Debian/Ubuntu, as root; no systemd, no cgroups, no accounting).

    python3 tools/local_slurm.py start     # install the packages if missing, start munged,
                                           # slurmctld and slurmd, wait until the node takes jobs
    python3 tools/local_slurm.py stop      # stop exactly the daemons this script started
    python3 tools/local_slurm.py status

State, logs and the generated slurm.conf live in $PDD_SLURM_DIR (default /tmp/pdd-slurm). One file
is written outside it: /etc/slurm/slurm.conf, a symlink to our config, because `srun` inside a job
started by Snakemake's SLURM executor does not see SLURM_CONF and reads the compiled-in path.
Snakemake talks to this cluster with workflow/profiles/slurm (squeue for status: no accounting).
Exit status: 0 ready / stopped, 1 with a one-line reason on stderr.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DIR = Path(os.environ.get("PDD_SLURM_DIR", "/tmp/pdd-slurm"))
CONF = DIR / "etc" / "slurm.conf"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = ["slurmd", "slurmctld", "munged"]   # stop order
SOCKET = DIR / "run" / "munge.sock"


class Failed(Exception):
    pass


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _pid_alive(name: str) -> int | None:
    """The pid from our pid file when that process exists, has that name and is not a zombie."""
    pf = DIR / "run" / f"{name}.pid"
    try:
        pid = int(pf.read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return pid if comm == name[:15] and state != "Z" else None


def _install() -> None:
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if not shutil.which("apt-get"):
        raise Failed("SLURM is not installed and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        p = _run(cmd, env=env, timeout=900)
        if p.returncode:
            raise Failed(f"{' '.join(cmd[:2])} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")


def _hardware() -> dict:
    """slurmd -C: what this node has (CPUs, sockets, cores, threads, memory)."""
    line = _run(["slurmd", "-C"]).stdout.splitlines()[0]
    hw = dict(re.findall(r"(\w+)=(\S+)", line))
    return {k: int(hw[k]) for k in ("CPUs", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")}


def _write_conf() -> str:
    host = socket.gethostname().split(".")[0]
    hw = _hardware()
    lines = {
        "ClusterName": "pdd", "SlurmctldHost": f"{host}(127.0.0.1)",
        "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={SOCKET}",
        "SlurmUser": "root", "SlurmdUser": "root", "SlurmctldPort": "6817", "SlurmdPort": "6818",
        "StateSaveLocation": DIR / "state" / "ctld", "SlurmdSpoolDir": DIR / "state" / "d",
        "SlurmctldPidFile": DIR / "run" / "slurmctld.pid", "SlurmdPidFile": DIR / "run" / "slurmd.pid",
        "SlurmctldLogFile": DIR / "log" / "slurmctld.log", "SlurmdLogFile": DIR / "log" / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none", "SwitchType": "switch/none",
        "MpiDefault": "none", "SchedulerType": "sched/backfill", "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory", "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none", "JobCompType": "jobcomp/none", "ReturnToService": "2",
        "MailProg": "/bin/true",
        "MinJobAge": "600",   # finished jobs stay visible to squeue, which Snakemake polls (no sacct here)
    }
    text = "# written by tools/local_slurm.py\n" + "".join(f"{k}={v}\n" for k, v in lines.items())
    # a node must not claim more memory than it has, or it goes INVAL: declare 90%
    text += (f"NodeName={host} NodeAddr=127.0.0.1 CPUs={hw['CPUs']} Sockets={hw['SocketsPerBoard']} "
             f"CoresPerSocket={hw['CoresPerSocket']} ThreadsPerCore={hw['ThreadsPerCore']} "
             f"RealMemory={hw['RealMemory'] * 9 // 10} State=UNKNOWN\n")
    text += "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    CONF.parent.mkdir(parents=True, exist_ok=True)
    tmp = CONF.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(CONF)
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        if SYSTEM_CONF.resolve() != CONF.resolve():
            raise Failed(f"{SYSTEM_CONF} exists and is not ours; move it away to use the local cluster")
    else:
        SYSTEM_CONF.symlink_to(CONF)
    return host


def _log_tail(name: str) -> str:
    try:
        return " | ".join((DIR / "log" / f"{name}.log").read_text().strip().splitlines()[-3:])
    except OSError:
        return "(no log)"


def start(wait_s: float = 60) -> str:
    if os.geteuid() != 0:
        raise Failed("starting the local SLURM needs root")
    t0 = time.monotonic()
    _install()
    for sub in ("etc", "run", "log", "state/ctld", "state/d", "munge"):
        (DIR / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(DIR / "run", 0o755)
    os.chmod(DIR / "munge", 0o700)
    host = _write_conf()
    key = DIR / "munge" / "munge.key"
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(128))
    os.chmod(key, 0o600)
    if not _pid_alive("munged"):
        SOCKET.unlink(missing_ok=True)
        p = _run(["munged", f"--socket={SOCKET}", f"--key-file={key}", f"--log-file={DIR / 'log' / 'munged.log'}",
                  f"--pid-file={DIR / 'run' / 'munged.pid'}", f"--seed-file={DIR / 'munge' / 'seed'}"])
        if p.returncode:
            raise Failed(f"munged did not start: {(p.stderr or p.stdout).strip()}")
    env = dict(os.environ, SLURM_CONF=str(CONF))
    if not _pid_alive("slurmctld"):
        shutil.rmtree(DIR / "state" / "ctld", ignore_errors=True)
        (DIR / "state" / "ctld").mkdir(parents=True)
        if _run(["slurmctld", "-c", "-f", CONF], env=env).returncode:
            raise Failed(f"slurmctld did not start: {_log_tail('slurmctld')}")
    if not _pid_alive("slurmd"):
        if _run(["slurmd", "-f", CONF], env=env).returncode:
            raise Failed(f"slurmd did not start: {_log_tail('slurmd')}")
    state = ""
    while time.monotonic() - t0 < wait_s:
        state = _run(["sinfo", "-h", "-N", "-n", host, "-o", "%T"], env=env).stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            return f"local SLURM ready: node {host} {state} after {time.monotonic() - t0:.1f} s (config {CONF})"
        time.sleep(0.25)
    raise Failed(f"node {host} not ready after {wait_s:.0f} s (state {state!r}): {_log_tail('slurmd')}")


def stop() -> str:
    stopped = []
    for name in DAEMONS:
        pid = _pid_alive(name)
        if pid:
            os.kill(pid, 15)
            for _ in range(40):
                if not _pid_alive(name):
                    break
                time.sleep(0.25)
            else:
                os.kill(pid, 9)
            stopped.append(name)
        (DIR / "run" / f"{name}.pid").unlink(missing_ok=True)
    if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == CONF.resolve():
        SYSTEM_CONF.unlink()
    return f"stopped {', '.join(stopped) or 'nothing (not running)'}"


def status() -> str:
    return ", ".join(f"{n} {'running' if _pid_alive(n) else 'stopped'}" for n in reversed(DAEMONS))


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    actions = {"start": start, "stop": stop, "status": status}
    if cmd not in actions:
        print(f"local_slurm: unknown command {cmd!r}; use start, stop or status", file=sys.stderr)
        return 1
    try:
        print(actions[cmd]())
    except (Failed, OSError, subprocess.SubprocessError) as e:
        print(f"local_slurm: {cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
