"""A private single-node SLURM cluster for tests (no tests in this module).

``slurm_unavailable_reason()`` says whether one can be started here (it may install
Debian's ``slurm-wlm`` and ``munge`` with apt-get, as CI machines start fresh), and
``SlurmCluster`` starts one::

    with SlurmCluster(tmp_path) as cluster:
        cluster.run(["sbatch", "--partition=gpu", "--gres=gpu:1", "--wrap", "..."])
        cluster.wait_idle(60)
        cluster.job_partitions()   # [(job name, partition, state), ...]

Everything lives in a private directory: the configuration (``slurm.conf``,
``gres.conf``, ``cgroup.conf``), state, logs and the job-completion log under
``workdir``; the munge key and socket and slurmd's spool (it holds the job steps' UNIX
sockets) in a directory under /tmp that is removed on exit (munged wants every parent
of its socket to be world-searchable, and a UNIX socket path is limited to ~100
characters). Nothing under /etc is touched; the daemons listen on free
ports, so a system SLURM, if any, is left alone.

Layout: one node (this host, 127.0.0.1) with a fake GPU (``Gres=gpu:1``; gres.conf
``File=/dev/null``, so ``--gres=gpu:1`` jobs see ``CUDA_VISIBLE_DEVICES=0``) in two
partitions, ``cpu`` (default) and ``gpu``. The node is declared with ONE CPU, so at
most one job runs at a time across both partitions (FireWorks' mongomock LaunchPad
and the embedded store cannot take concurrent writers); ``task/none`` binds nothing,
so that job still uses every core of the machine. (``OverSubscribe=EXCLUSIVE`` would
also serialise jobs, but an exclusive job is given all the node's GRES: a cpu job
would then see ``CUDA_VISIBLE_DEVICES=0`` too.) Jobs therefore must not ask for more
than one CPU (``--ntasks``/``--cpus-per-task`` > 1) or for memory (``--mem``): such
requests are refused as unsatisfiable.

The partition of finished jobs is read from the job-completion log
(``JobCompType=jobcomp/filetxt``), so neither slurmdbd nor a database is needed.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmError", "slurm_unavailable_reason"]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
APT_PACKAGES = ("slurm-wlm", "munge")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
PARTITIONS = ("cpu", "gpu")
# environment variables of an enclosing SLURM job (or a user's settings) that would
# redirect or alter our clients' requests
_CLIENT_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_", "SACCT_")
_MARKER = "AL_FLOWS_SLURM_CLUSTER"

_reason_cache: list[str | None] = []


class SlurmError(RuntimeError):
    """The cluster could not be started, or a wait ran out of time."""


# --------------------------------------------------------------------------- availability


def _sbin_path() -> str:
    """PATH with the sbin directories (daemons live there; a non-login root shell may lack them)."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    for extra in ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if extra not in parts:
            parts.append(extra)
    return os.pathsep.join(p for p in parts if p)


def _which(name: str) -> str | None:
    return shutil.which(name, path=_sbin_path())


def _missing_binaries() -> list[str]:
    return [b for b in DAEMONS + CLIENTS if _which(b) is None]


def _apt_install() -> str | None:
    """Install slurm-wlm and munge; return None or why it failed. Service starts are blocked."""
    if _which("apt-get") is None:
        return "apt-get is not available to install slurm-wlm and munge"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=_sbin_path())
    install = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=300",
        *APT_PACKAGES,
    ]
    created_policy = False
    if not POLICY_RC_D.exists():  # keep the packages' init scripts from starting system daemons
        POLICY_RC_D.write_text("#!/bin/sh\n# written by al_flows tests/slurm_cluster.py\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        created_policy = True
    try:
        res = subprocess.run(install, check=False, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:  # stale or missing package lists on a fresh machine
            subprocess.run(
                ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            res = subprocess.run(install, check=False, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-2:])
            return f"apt-get install {' '.join(APT_PACKAGES)} failed (rc={res.returncode}): {tail}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install {' '.join(APT_PACKAGES)} failed: {exc}"
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    return None


def _compute_reason() -> str | None:
    if os.environ.get("AL_FLOWS_SKIP_SLURM"):
        return "AL_FLOWS_SKIP_SLURM is set"
    if os.uname().sysname != "Linux":
        return "a test SLURM cluster needs Linux"
    if os.geteuid() != 0:
        return "starting a private SLURM cluster (munged, slurmctld, slurmd) needs root"
    if _missing_binaries():
        why = _apt_install()
        if why:
            return why
        missing = _missing_binaries()
        if missing:
            return f"SLURM/munge programs missing after installing packages: {', '.join(missing)}"
    trial = Path(tempfile.mkdtemp(prefix="al_flows_slurm_probe_"))
    try:
        with SlurmCluster(trial):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means "no cluster here"
        return f"SLURM daemons failed to start: {' '.join(str(exc).split())[:400]}"
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    return None


def slurm_unavailable_reason() -> str | None:
    """None if a private SLURM cluster can be started here, else a one-line reason.

    May install ``slurm-wlm`` and ``munge`` with apt-get and starts (and stops) a trial
    cluster; the answer is cached for the process.
    """
    if not _reason_cache:
        _reason_cache.append(_compute_reason())
    return _reason_cache[0]


# --------------------------------------------------------------------------- the cluster


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (the
    daemons run in the foreground, so a killed test run cannot leave them behind)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


_JOBCOMP_FIELD = re.compile(r"(?:^|\s)([A-Za-z]+)=")


def parse_jobcomp_line(line: str) -> dict[str, str]:
    """One ``jobcomp/filetxt`` record (``Key=value Key=value ...``) as a dict.

    Values may contain spaces (a job name, a directory), so a value runs up to the next
    `` Key=``.
    """
    matches = list(_JOBCOMP_FIELD.finditer(line))
    out = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[m.group(1)] = line[m.end() : end].strip()
    return out


class SlurmCluster:
    """Context manager: a private single-node SLURM cluster with partitions cpu and gpu.

    Attributes (valid inside the ``with``): ``env`` (variables a client needs:
    ``SLURM_CONF``), ``conf`` (path of slurm.conf), ``root`` (private directory),
    ``node`` (node name), ``jobcomp`` (job-completion log), ``logdir``.
    """

    def __init__(self, workdir: str | os.PathLike, start_timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.env: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._run_dir: Path | None = None
        self.logdir: Path | None = None
        self._atexit = None

    # ---------------------------------------------------------------- configuration
    def _write_config(self) -> None:
        root = self.root
        for sub in ("etc", "state", "log"):
            (root / sub).mkdir(mode=0o755)
        spool = self._run_dir / "spool"  # slurmd puts UNIX sockets here: keep the path short
        spool.mkdir(mode=0o755)
        self.node = socket.gethostname().split(".")[0] or "localhost"
        self.conf = root / "etc" / "slurm.conf"
        self.jobcomp = root / "jobcomp.txt"
        self.logdir = root / "log"
        ctld_port, d_port = _free_port(), _free_port()
        while d_port == ctld_port:
            d_port = _free_port()
        mail = _which("true") or "/bin/true"
        node_line = (
            f"NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} CPUs=1 Boards=1 "
            "SocketsPerBoard=1 CoresPerSocket=1 ThreadsPerCore=1 Gres=gpu:1 State=UNKNOWN"
        )
        self.conf.write_text(f"""\
# private test cluster written by al_flows tests/slurm_cluster.py
ClusterName=alflows
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self._munge_socket}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={spool}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
MailProg={mail}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
# start a submitted job at once (the defaults wait up to ~3 s per job)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
SlurmctldTimeout=60
SlurmdTimeout=60
# One CPU declared (fewer than the hardware has; config_overrides makes slurmd report
# it): one job at a time on the node across both partitions.
{node_line}
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE OverSubscribe=NO State=UP
PartitionName=gpu Nodes={self.node} Default=NO MaxTime=INFINITE OverSubscribe=NO State=UP
""")
        (root / "etc" / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File=/dev/null\n")
        # read by slurmd in any case; no cgroup plugin is used (proctrack/linuxproc, task/none)
        (root / "etc" / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")

    # ---------------------------------------------------------------- environment
    def client_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """os.environ without SLURM_*/SBATCH_*... inherited settings, plus ``self.env``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
        env["PATH"] = _sbin_path()
        env.update(self.env)
        if extra:
            env.update(extra)
        return env

    def run(self, cmd, **kw) -> subprocess.CompletedProcess:
        """subprocess.run with the cluster's environment (``env=`` entries are added on top).

        A string is run through the shell. Output is captured as text unless told otherwise.
        """
        kw["env"] = self.client_env(kw.get("env"))
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        if isinstance(cmd, str):
            kw.setdefault("shell", True)
        kw.setdefault("check", False)
        return subprocess.run(cmd, **kw)

    # ---------------------------------------------------------------- start / stop
    def _spawn(self, name: str, argv: list[str]) -> None:
        env = self.client_env({_MARKER: str(self.root)})
        out = open(self.logdir / f"{name}.out", "wb")  # noqa: SIM115 - kept by the child
        try:
            self._procs[name] = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()

    def _diagnostics(self) -> str:
        parts = []
        for name, proc in self._procs.items():
            rc = proc.poll()
            parts.append(f"{name}: {'running' if rc is None else f'exited rc={rc}'}")
        for f in sorted(self.logdir.glob("*")) if self.logdir else []:
            t = _tail(f, 8)
            if t:
                parts.append(f"--- {f.name}\n{t}")
        if self._run_dir:
            t = _tail(self._run_dir / "munged.log", 5)
            if t:
                parts.append(f"--- munged.log\n{t}")
        return "\n".join(parts)

    def _check_alive(self, what: str) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmError(f"{name} exited (rc={proc.returncode}) while {what}\n{self._diagnostics()}")

    def _wait(self, cond, timeout: float, what: str, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(what)
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise SlurmError(f"timed out after {timeout:.0f} s {what}\n{self._diagnostics()}")
            time.sleep(interval)

    def _partitions_up(self) -> bool:
        res = self.run(["sinfo", "-h", "-o", "%R %a %t"], timeout=20)
        if res.returncode != 0:
            return False
        rows = {}
        for line in res.stdout.split("\n"):
            f = line.split()
            if len(f) == 3:
                rows[f[0]] = (f[1], f[2].rstrip("*~#!%$@^-"))
        return all(p in rows and rows[p][0] == "up" and rows[p][1] in ("idle", "mix", "alloc") for p in PARTITIONS)

    def start(self) -> SlurmCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir=self.workdir)).resolve()
        self.root.chmod(0o755)
        self.logdir = self.root / "log"
        # runtime directory for UNIX sockets (munged's, slurmd's step sockets): short path
        # (~100 characters at most) and, for munged, every directory above the socket
        # searchable by all, which a pytest tmp_path (0700) is not
        self._run_dir = Path(tempfile.mkdtemp(prefix="alfl-slurm-", dir="/tmp"))
        self._run_dir.chmod(0o755)
        self._munge_socket = self._run_dir / "munge.socket"
        self._atexit = atexit.register(self.stop)
        try:
            key = self._run_dir / "munge.key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(1024))
            self._write_config()
            self.env = {"SLURM_CONF": str(self.conf)}
            md = self._run_dir
            self._spawn(
                "munged",
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={self._munge_socket}",
                    f"--key-file={key}",
                    f"--log-file={md / 'munged.log'}",
                    f"--pid-file={md / 'munged.pid'}",
                    f"--seed-file={md / 'munged.seed'}",
                ],
            )
            self._wait(lambda: self._munge_socket.exists(), 20, "waiting for munged's socket", 0.05)
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait(self._partitions_up, self.start_timeout, "waiting for sinfo to show partitions cpu and gpu up")
        except BaseException:
            self.stop()
            raise
        return self

    def job_ids(self, *args: str) -> list[str]:
        """Job ids squeue lists (pending/running/completing; `"-t", "all"` adds finished ones)."""
        try:
            res = self.run(["squeue", "-h", "-o", "%i", *args], timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return res.stdout.split() if res.returncode == 0 else []

    def daemon_pids(self) -> dict[str, int]:
        """{"munged"|"slurmctld"|"slurmd": pid} of the daemons started (empty after stop)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def leftover_pids(self) -> list[int]:
        """Processes of this cluster still alive: job steps and their children (their
        environment names our slurm.conf or carries our marker)."""
        if self.root is None:
            return []
        marks = {f"{_MARKER}={self.root}".encode(), f"SLURM_CONF={self.root / 'etc' / 'slurm.conf'}".encode()}
        me = os.getpid()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marks.intersection(environ):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Cancel every job, stop the daemons (whole process groups) and clean up. Idempotent."""
        if self._atexit is not None:
            atexit.unregister(self.stop)
            self._atexit = None
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None and self.env:
            ids = self.job_ids()
            if ids:
                try:
                    self.run(["scancel", *ids], timeout=20)
                    deadline = time.monotonic() + 15
                    while self.job_ids() and time.monotonic() < deadline:
                        time.sleep(0.3)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is None:
                continue
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # the group may hold children that outlive the leader
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._procs.clear()
        for _ in range(3):  # job steps (slurmstepd makes its own session)
            pids = self.leftover_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> SlurmCluster:
        # one private cluster at a time on this machine (pytest-xdist runs test files side by side):
        # its daemons are named after this host, so two would answer for one node
        self._lock = open(os.path.join(tempfile.gettempdir(), "al_flows_slurm_cluster.lock"), "w")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            return self.start()
        except BaseException:
            self._unlock()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    # ---------------------------------------------------------------- queries
    def squeue(self) -> str:
        return self.run(["squeue"], timeout=20).stdout

    def job_records(self) -> list[dict[str, str]]:
        """Every finished job (any terminal state) from the job-completion log, in order."""
        try:
            text = self.jobcomp.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [parse_jobcomp_line(line) for line in text.splitlines() if line.strip()]

    def job_partitions(self) -> list[tuple[str, str, str]]:
        """(job name, partition, state) of every finished job, from jobcomp/filetxt."""
        return [(r.get("Name", ""), r.get("Partition", ""), r.get("JobState", "")) for r in self.job_records()]

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until no job is pending, running or completing, and every job the controller
        still remembers has its completion record."""
        self._wait(lambda: not self.job_ids(), timeout, f"waiting for the queue to empty:\n{self.squeue()}", 0.25)
        known = set(self.job_ids("-t", "all"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = {r.get("JobId") for r in self.job_records()}
            if known <= done:
                return
            time.sleep(0.1)

    def sbatch(self, *args: str, cwd=None) -> str:
        """Submit with sbatch --parsable; return the job id (raises on failure)."""
        res = self.run(["sbatch", "--parsable", *args], cwd=cwd, timeout=30)
        if res.returncode != 0:
            raise SlurmError(f"sbatch {shlex.join(args)} failed: {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]
