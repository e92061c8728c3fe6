"""A throwaway single-node Slurm (munged + slurmctld + slurmd) on localhost, for tests.

Everything lives in one temporary folder: munge key and socket, slurm.conf,
state, spool, logs and pid files. Private ports, proctrack/pgid and task/none
need neither systemd nor cgroups. `SLURM_CONF` points the client commands at it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """Slurm could not be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _conf(root: Path, host: str, cpus: int) -> str:
    ctld, slurmd = _free_port(), _free_port()
    return f"""ClusterName=nbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
SlurmUser={getpass.getuser()}
SlurmdUser={getpass.getuser()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=nbnode NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=nbnode Default=YES MaxTime=INFINITE State=UP
"""


def _start(root: Path, env: dict[str, str]) -> None:
    for name in ("state", "spool", "log"):
        (root / name).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    commands = [
        ["munged", "--force", f"--key-file={key}", f"--socket={root}/munge.sock",
         f"--pid-file={root}/munged.pid", f"--log-file={root}/log/munged.log",
         f"--seed-file={root}/munged.seed"],
        ["slurmctld"],
        ["slurmd", "-N", "nbnode"],
    ]
    for cmd in commands:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{cmd[0]} failed to start: {proc.stderr.strip()}")


def _wait_idle(env: dict[str, str], root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                              text=True)
        if proc.stdout.strip() == "idle":
            return
        time.sleep(0.5)
    logs = "".join(p.read_text()[-600:] for p in sorted((root / "log").glob("*.log")))
    raise SlurmUnavailable(f"the node never became idle; daemon logs end with:\n{logs}")


def _stop(root: Path) -> None:
    for name in reversed(DAEMONS):
        pid_file = root / f"{name}.pid"
        if not pid_file.exists():
            continue
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):  # up to 10 s
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError, IndexError):
            pass


class SlurmCluster:
    """Slurm under `root`: start() returns the environment (SLURM_CONF set) for clients."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root, self.cpus = Path(root), cpus

    def start(self) -> dict[str, str]:
        missing = [d for d in (*DAEMONS, "sbatch", "sinfo") if shutil.which(d) is None]
        if missing:
            raise SlurmUnavailable(f"not installed: {', '.join(missing)}"
                                   " (Debian packages slurm-wlm and munge)")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "slurm.conf"
        conf.write_text(_conf(self.root, socket.gethostname().split(".")[0], self.cpus))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        _start(self.root, env)
        _wait_idle(env, self.root)
        return env

    def stop(self) -> None:
        _stop(self.root)
