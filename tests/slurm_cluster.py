"""A real single-node SLURM cluster on localhost for the integration tests and benchmarks:
slurmctld + slurmd + slurmdbd (with a private MariaDB) from Debian's slurm-wlm packages.

Every file (conf, state, spool, logs, pids, database) lives in one directory; clients find
the cluster through ``SLURM_CONF``. Daemons run in the foreground under their own session
and are stopped by PID. Usage outside pytest:

    python tests/slurm_cluster.py start DIR [--max-array-size N]   # prints export SLURM_CONF=...
    python tests/slurm_cluster.py stop DIR
"""
import argparse
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server-core", "mariadb-client-core",
            "chromium-headless-shell"]  # the browser that opens `ptslurm report`'s page (tests/browser.py)
CLUSTER = "ptslurmtest"
ACCOUNT = "lab"
DB_PORT = 33061
DBD_PORT = 36819
CTLD_PORT = 36817
SLURMD_PORT = 36818


def installed() -> bool:
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "mariadbd",
                                         "chromium-headless-shell"))


def install() -> None:
    """apt-get the packages without starting their daemons (policy-rc.d says no)."""
    if installed():
        return
    policy = Path("/usr/sbin/policy-rc.d")
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)


BRIDGE = "ptsbr0"
SUBNET = "10.77.0"  # the bridge is .1, node i of the two-node partition .(10 + i)
HOSTS_TAG = "# ptslurm test cluster"
EXTRA_NODES = ("ptsn1", "ptsn2")


def namespaces_work() -> bool:
    """Whether this machine lets root make network and UTS namespaces with a veth pair (the
    two-node partition's nodes live in them)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["ip", "link", "add", "ptsprobe0", "type", "veth", "peer", "name", "ptsprobe1"],
                           capture_output=True)
    if probe.returncode != 0:
        return False
    subprocess.run(["ip", "link", "del", "ptsprobe0"], capture_output=True)
    return subprocess.run(["unshare", "--net", "--uts", "true"], capture_output=True).returncode == 0


class Cluster:
    def __init__(self, directory, max_array_size: int = 1001, cpus: int = 8, gpus: int = 2, two_nodes: bool = False,
                 second: bool = False):
        self.dir = Path(directory).resolve()
        # a second cluster beside the first (its own ports, name, database and job ids): the
        # suite runs its longest test on one while the rest of the SLURM tier uses the other
        self.second = second
        offset = 100 if second else 0
        self.db_port, self.dbd_port = DB_PORT + offset, DBD_PORT + offset
        self.ctld_port, self.slurmd_port = CTLD_PORT + offset, SLURMD_PORT + offset
        self.name = CLUSTER + ("two" if second else "")
        self.max_array_size = max_array_size
        self.cpus = cpus
        self.gpus = gpus
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        # a partition 'multi' of two more nodes, each a slurmd in its own network and UTS
        # namespace (own hostname and address on a bridge), for points that span nodes
        self.extra = list(EXTRA_NODES) if two_nodes else []

    @property
    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ config files
    def write_config(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "log", "run", "db", "gpu"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.5)
        epilog = d / "epilog.sh"
        epilog.write_text("#!/bin/sh\nexit 0\n")
        epilog.chmod(0o755)
        gres_lines = []
        for i in range(self.gpus):
            dev = d / "gpu" / f"nvidia{i}"
            if not dev.exists():
                os.symlink("/dev/null", dev)  # a character device: slurm sets CUDA_VISIBLE_DEVICES
            gres_lines.append(f"Name=gpu File={dev}")
        (d / "gres.conf").write_text("\n".join(gres_lines) + "\n")
        self.conf.write_text(f"""\
ClusterName={self.name}
FirstJobId={500000 if self.second else 1}
SlurmctldHost={self.host}({f"{SUBNET}.1" if self.extra else "127.0.0.1"})
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,sched_interval=2
Epilog={epilog}
JobRequeue=1
MinJobAge=600
MaxArraySize={self.max_array_size}
MaxJobCount=20000
MessageTimeout=10
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldParameters=preempt_send_user_signal
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/none
NodeName={self.host} NodeAddr=127.0.0.1 Sockets=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory={mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=high Nodes={self.host} Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
PartitionName=timed Nodes={self.host} Default=NO DefaultTime=00:45:00 MaxTime=02:00:00 State=UP PriorityTier=1 PreemptMode=OFF
""" + "".join(f"NodeName={name} NodeAddr={SUBNET}.{10 + i} Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 "
              f"RealMemory={mem_mb // 4} State=UNKNOWN\n" for i, name in enumerate(self.extra, 1))
              + (f"PartitionName=multi Nodes={','.join(self.extra)} Default=NO MaxTime=INFINITE State=UP "
                 f"PriorityTier=1 PreemptMode=OFF\n" if self.extra else ""))
        dbd = d / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/none
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser=root
PidFile={d}/run/slurmdbd.pid
LogFile={d}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=root
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    # ------------------------------------------------------------------ daemons
    def _spawn(self, name: str, cmd) -> None:
        log = open(self.dir / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, **self.env))
        (self.dir / "run" / f"{name}.ptslurm-pid").write_text(str(proc.pid))

    def _wait(self, what: str, check, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n" + p.read_text()[-2000:] for p in sorted((self.dir / "log").glob("*")))
        raise RuntimeError(f"local SLURM cluster: {what} did not come up in {timeout} s\n{logs}")

    def _ok(self, *cmd) -> bool:
        return subprocess.run(list(cmd), capture_output=True, env=dict(os.environ, **self.env)).returncode == 0

    def start(self) -> "Cluster":
        self._stop_daemons()  # a previous run of this directory
        busy = [port for port in (self.db_port, self.dbd_port, self.ctld_port, self.slurmd_port) if _listening(port)]
        if busy:  # another cluster runs (another checkout's suite): leave its network alone
            raise RuntimeError(f"local SLURM cluster: ports {busy} are taken, probably by a test cluster "
                               f"left running; stop it with `python tests/slurm_cluster.py stop DIR`")
        self.write_config()
        if self.extra:
            self._network_up()
        db = self.dir / "db"
        # each cluster's database its own temp folder: two clusters set up at once in the shared
        # /tmp collided on MariaDB's temporary table files
        tmp = self.dir / "dbtmp"
        tmp.mkdir(exist_ok=True)
        if not (db / "mysql").exists():
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db", f"--tmpdir={tmp}"],
                           check=True, capture_output=True)
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={db}", "--user=root", f"--tmpdir={tmp}",
                                 "--bind-address=127.0.0.1", f"--port={self.db_port}",
                                 f"--socket={self.dir / 'run' / 'mysql.sock'}", "--skip-grant-tables",
                                 f"--pid-file={self.dir / 'run' / 'mariadbd.pid'}",
                                 "--innodb-buffer-pool-size=32M", "--skip-log-bin"])
        self._wait("mariadbd", lambda: self._ok("mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.db_port),
                                                 "-u", "root", "-e", "select 1"))
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait("slurmdbd", lambda: self._ok("sacctmgr", "-n", "show", "cluster"))
        self._ok("sacctmgr", "-i", "add", "cluster", self.name)
        # limits are enforced (as on real clusters), so the user needs an association; tests
        # set QOS limits (MaxSubmitJobsPerUser) on 'normal' and reset them
        self._ok("sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={self.name}")
        self._ok("sacctmgr", "-i", "add", "user", getpass.getuser(), f"account={ACCOUNT}", f"cluster={self.name}")
        self._ok("sacctmgr", "-i", "modify", "qos", "normal", "set", "MaxSubmitJobsPerUser=-1")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])
        for name in self.extra:
            (self.dir / "spool" / name).mkdir(parents=True, exist_ok=True)
            # nsenter, not `ip netns exec`: that one mounts a fresh /sys, without the cgroup
            # file system slurmd needs
            self._spawn(f"slurmd-{name}", ["nsenter", f"--net=/run/netns/{name}", "unshare", "--uts", "sh", "-c",
                                           f"hostname {name} && exec slurmd -D -f {self.conf} -N {name}"])

        def idle():
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True,
                                 env=dict(os.environ, **self.env))
            states = dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
            return out.returncode == 0 and len(states) == 1 + len(self.extra) and set(states.values()) == {"idle"}

        self._wait("the nodes (sinfo idle)", idle)
        return self

    def _network_up(self) -> None:
        """A bridge with the controller's address, and a namespace per extra node wired to it
        with a veth pair; the node names resolve through /etc/hosts (marked, removed by stop)."""
        def ip(*args: str) -> None:
            subprocess.run(["ip", *args], check=True, capture_output=True)

        self._network_down()
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        lines = []
        for i, name in enumerate(self.extra, 1):
            ip("netns", "add", name)
            ip("link", "add", f"ptsh{i}", "type", "veth", "peer", "name", f"ptsv{i}")
            ip("link", "set", f"ptsv{i}", "netns", name)
            ip("link", "set", f"ptsh{i}", "master", BRIDGE)
            ip("link", "set", f"ptsh{i}", "up")
            ip("netns", "exec", name, "ip", "addr", "add", f"{SUBNET}.{10 + i}/24", "dev", f"ptsv{i}")
            ip("netns", "exec", name, "ip", "link", "set", f"ptsv{i}", "up")
            ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            lines.append(f"{SUBNET}.{10 + i} {name} {HOSTS_TAG}\n")
        with open("/etc/hosts", "a") as fh:
            fh.writelines(lines)

    def _network_down(self) -> None:
        for i, name in enumerate(EXTRA_NODES, 1):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", f"ptsh{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            return
        if HOSTS_TAG in hosts:
            Path("/etc/hosts").write_text("".join(ln for ln in hosts.splitlines(True) if HOSTS_TAG not in ln))

    def kill_node(self) -> None:
        """A crash of the main node: slurmd and every job step on it SIGKILLed, and the node
        marked DOWN, as slurmctld does once it stops answering (after SlurmdTimeout, 300 s by
        default: done at once here). SLURM requeues the jobs it ran (JobRequeue=1)."""
        pid = int((self.dir / "run" / "slurmd.ptslurm-pid").read_text())
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._kill_processes(("slurmstepd", "submitit.core._submit"), signal.SIGKILL)
        subprocess.run(["scontrol", "update", f"nodename={self.host}", "state=down", "reason=crashed"],
                       check=True, capture_output=True, env=dict(os.environ, **self.env))

    def start_node(self) -> None:
        """slurmd of the main node again, after ``kill_node``: it registers and the node
        returns to service (ReturnToService=2)."""
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])

    def stop(self) -> None:
        self._stop_daemons()
        if self.extra:
            self._network_down()

    def _stop_daemons(self) -> None:
        run = self.dir / "run"
        for name in ("slurmd-ptsn1", "slurmd-ptsn2", "slurmd", "slurmctld", "slurmdbd", "mariadbd"):
            pidfile = run / f"{name}.ptslurm-pid"
            if not pidfile.exists():
                continue
            pid = int(pidfile.read_text())
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pidfile.unlink()
                continue
            deadline = time.time() + 15
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            pidfile.unlink()
        # job steps left behind by a killed slurmd
        self._kill_processes(("slurmstepd",), signal.SIGTERM)

    def _kill_processes(self, patterns, sig) -> None:
        """Signal the processes of this cluster (their environment names its SLURM_CONF, as
        the daemons' and the jobs' do) whose command line holds one of ``patterns``: the other
        cluster's jobs live on."""
        mark = f"SLURM_CONF={self.conf}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if not any(p in cmdline for p in patterns) or mark not in (proc / "environ").read_bytes().split(b"\0"):
                    continue
                os.kill(int(proc.name), sig)
            except (OSError, ValueError):
                continue


@contextlib.contextmanager
def running_cluster(directory, **options):
    """For benchmarks: the cluster $SLURM_CONF names when its controller answers (the test
    suite's, say), else a new one in ``directory``, stopped afterwards."""
    conf = os.environ.get("SLURM_CONF")
    if conf and os.path.isfile(conf) and subprocess.run(["scontrol", "ping"], capture_output=True,
                                                         timeout=30).returncode == 0:
        yield None
        return
    install()
    cluster = Cluster(directory, **options)
    os.environ.update(cluster.env)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["install", "start", "stop"])
    p.add_argument("directory", nargs="?", default="/tmp/ptslurm-test-cluster")
    p.add_argument("--max-array-size", type=int, default=1001)
    p.add_argument("--second", action="store_true", help="the second cluster's ports, beside a first one")
    args = p.parse_args()
    if args.action == "install":
        install()
        return 0
    cluster = Cluster(args.directory, max_array_size=args.max_array_size, second=args.second)
    if args.action == "stop":
        cluster.stop()
        return 0
    install()
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
