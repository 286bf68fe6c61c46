"""Real Redis for the tests that need one, on free ports in temporary directories.

The same servers the benchmarks start (``benchmarks/_redis.py``): no persistence, so one
stopped and started again on the same port comes back empty. ``redis_server`` is one
server; ``sentinel_group`` a primary, a replica and three Sentinels; ``redis_cluster``
three Cluster nodes; ``tls_redis`` a server that speaks only TLS and wants a client
certificate, with the certificates the suite makes (trustme). Without the
``redis-server`` binary the tests skip, saying how to get it; with
``GSIM_REQUIRE_REDIS=1`` (CI) they fail instead, so they never silently skip there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from benchmarks._redis import ClusterGroup, RedisProcess, SentinelGroup, free_port

#: What the tests call it.
RedisServer = RedisProcess


def need_redis() -> None:
    """Skip (fail in CI) the test unless redis-server and redis-cli are installed."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = (
            "redis-server is not installed: the fleet's tests need a real Redis "
            "(apt-get install redis-server, or the official redis container image)"
        )
        if os.environ.get("GSIM_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test (its own port and directory)."""
    need_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A primary, its replica and three Sentinels (service ``gsim``), for one test."""
    need_redis()
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def redis_cluster() -> Iterator[ClusterGroup]:
    """A three-node Redis Cluster, for one test."""
    need_redis()
    with ClusterGroup() as cluster:
        yield cluster


@attrs.frozen
class TLSRedis:
    """A redis-server on TLS only, and the files a client needs to reach it."""

    server: RedisServer
    port: int
    ca: Path
    cert: Path
    key: Path

    @property
    def url(self) -> str:
        """A rediss:// URL with the CA and the client certificate, as redis-py takes them."""
        return (
            f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"
            f"&ssl_certfile={self.cert}&ssl_keyfile={self.key}"
        )


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TLSRedis]:
    """A redis-server whose TLS port wants a client certificate of the suite's own CA."""
    need_redis()
    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("gsim-async-tests")
    files = {
        "ca": tmp_path / "ca.pem",
        "server_cert": tmp_path / "server.pem",
        "server_key": tmp_path / "server.key",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server_cert.private_key_pem.write_to_path(str(files["server_key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client_cert.private_key_pem.write_to_path(str(files["key"]))
    port = free_port()
    # The plain port stays for the start-up check (PING); the tests use the TLS one.
    server = RedisServer(
        "--tls-port", str(port),
        "--tls-cert-file", str(files["server_cert"]),
        "--tls-key-file", str(files["server_key"]),
        "--tls-ca-cert-file", str(files["ca"]),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    with server:
        yield TLSRedis(server, port, files["ca"], files["cert"], files["key"])
