"""Throw-away Redis for the benchmarks and tests: free ports, temporary directories.

* ``RedisProcess``: one redis-server. No persistence (``--save ""``, no AOF): a server
  stopped and started again on the same port comes back empty, as after losing its
  data, the harder case for a fleet. Extra options make it a replica, a Cluster node
  or a TLS server.
* ``SentinelGroup``: a primary, a replica and three Sentinels (``redis-server
  --sentinel``, the same binary) that fail over within a few seconds of the primary's
  death.
* ``ClusterGroup``: three Cluster nodes (all primaries) joined by ``redis-cli --cluster
  create``.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on now (on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server)")
    return found


def redis_cli(port: int, *args: str, timeout: float = 10) -> str:
    """What ``redis-cli -p port args...`` prints (a Sentinel's or a node's admin answer)."""
    done = subprocess.run(  # noqa: S603 - our own binary and arguments
        [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout.strip()


class RedisProcess:
    """One redis-server that a benchmark may stop, kill and start again (same port).

    ``options`` are added to the command line (``"--replicaof", "127.0.0.1", "6379"``);
    ``sentinel`` is a Sentinel's configuration (its ``port`` and ``dir`` lines are
    added): the server then runs as a Sentinel.
    """

    def __init__(self, *options: str, sentinel: str | None = None) -> None:
        self.binary = _binary("redis-server")
        self.options: Sequence[str] = options
        self.sentinel = sentinel
        self._directory = tempfile.TemporaryDirectory(prefix="gsim-bench-redis-")
        self.directory = Path(self._directory.name)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        if self.sentinel is not None:
            config = self.directory / "sentinel.conf"
            # Rewritten by the Sentinel as it learns: written anew at each start.
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n{self.sentinel}\n"
            )
            return [self.binary, str(config), "--sentinel"]
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                *self.options]  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    # A server with a password answers NOAUTH: it is up all the same.
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
                if self.process.poll() is not None:
                    break  # it exited (an option it refused, a socket path too long)
        status = self.process.poll()
        self.stop() if status is None else self.process.wait()
        self.process = None
        raise RuntimeError(
            f"redis-server did not start on port {self.port}"
            + (f" (it exited with status {status})" if status is not None else "")
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM); what it held is gone."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as a lost host would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self._directory.cleanup()

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(what: str, ready: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class SentinelGroup:
    """A primary, its replica and three Sentinels watching them (quorum 2).

    The Sentinels take the primary as down after ``down_after`` ms and fail over to the
    replica: a few seconds after ``kill_primary()``, ``url`` leads to the new primary.
    """

    def __init__(self, service: str = "gsim", *, down_after: int = 1000) -> None:
        self.service = service
        # Either may be the primary (after a failover): neither waits 5 s (the default)
        # before it sends a replica its first copy.
        quick = ("--repl-diskless-sync-delay", "0")
        self.primary = RedisProcess(*quick)
        self.replica = RedisProcess(*quick, "--replicaof", "127.0.0.1", str(self.primary.port))
        config = (
            f"sentinel monitor {service} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after}\n"
            f"sentinel failover-timeout {service} 10000\n"
            f"sentinel parallel-syncs {service} 1"
        )
        self.sentinels = [RedisProcess(sentinel=config) for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def primary_port(self) -> int | None:
        """The port of the primary the first Sentinel names now."""
        answer = redis_cli(
            self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", self.service
        ).split()
        return int(answer[1]) if len(answer) == 2 else None

    def start(self) -> None:
        """Start everything; returns once every Sentinel knows the replica and the others."""
        self.primary.start()
        self.replica.start()
        _wait(
            "the replica to sync",
            lambda: "master_link_status:up" in redis_cli(self.replica.port, "INFO", "replication"),
        )
        for sentinel in self.sentinels:
            sentinel.start()

        def known() -> bool:
            for sentinel in self.sentinels:
                state = redis_cli(sentinel.port, "SENTINEL", "master", self.service).split("\n")
                fields = dict(zip(state[0::2], state[1::2], strict=False))
                if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                    return False
            return True

        _wait("the Sentinels to know the replica and each other", known, 30)

    def kill_primary(self) -> None:
        """SIGKILL the primary: the Sentinels fail over to the replica."""
        self.primary.kill()

    def wait_failover(self, timeout: float = 30) -> None:
        """Returns once the Sentinels name the replica as the primary."""
        _wait("the failover", lambda: self.primary_port() == self.replica.port, timeout)

    def close(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.close()

    def __enter__(self) -> SentinelGroup:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClusterGroup:
    """Three Redis Cluster nodes, every one a primary, made by ``redis-cli --cluster create``."""

    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [
            RedisProcess("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000")
            for _ in range(nodes)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The first node's URL: a client finds the others from it."""
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = subprocess.run(  # noqa: S603 - our own binary and arguments
            [_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")

        def ready() -> bool:
            return all(
                "cluster_state:ok" in redis_cli(n.port, "CLUSTER", "INFO") for n in self.nodes
            )

        _wait("the Cluster to serve every slot", ready, 30)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> ClusterGroup:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
