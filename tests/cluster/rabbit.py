"""A throwaway 3-node RabbitMQ cluster on this machine, from Debian's `rabbitmq-server`.

Each node runs the package's own scripts (not the /usr/sbin wrapper, which switches to
the `rabbitmq` user and the system node's files) with its own node name, AMQP and
distribution ports, data, logs and config under a temp dir, and its own Erlang cookie
(HOME points at the temp dir). The system broker (rabbit@localhost on 5672) is never
touched. Nodes 2..n `join_cluster` node 1. `close()` stops every node this made, by
its process group, even after a failure.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

SBIN = Path(os.environ.get("SAFEGUARD_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
CONF = "disk_free_limit.absolute = 50MB\nlog.console = false\nlog.file.level = warning\n"


@dataclass
class Node:
    name: str
    port: int
    dist_port: int
    dir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


class RabbitCluster:
    def __init__(self, root: Path, size: int = 3, prefix: str = "sgc") -> None:
        self.root, self.home = root, root / "home"
        tag = f"{prefix}{os.getpid()}x"  # unique per test session: epmd names are machine-wide
        self.nodes = [Node(f"{tag}{i}@localhost", free_port(), free_port(), root / f"n{i}") for i in range(1, size + 1)]

    def env(self, node: Node | None = None) -> dict[str, str]:
        env = {**os.environ, "HOME": str(self.home), "RABBITMQ_CONF_ENV_FILE": str(self.root / "none.conf")}
        if node is not None:
            env.update({
                "RABBITMQ_NODENAME": node.name, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(node.port), "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"), "RABBITMQ_LOG_BASE": str(node.dir / "log"),
                "RABBITMQ_CONFIG_FILE": str(node.dir / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),  # none: no management
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            })
        return env

    def ctl(self, node: Node, *args: str, timeout: float = 90, tool: str = "rabbitmqctl") -> str:
        proc = subprocess.run([str(SBIN / tool), "-n", node.name, *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} -n {node.name} {' '.join(args)}: {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def start(self) -> None:
        self.home.mkdir(parents=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[].\n")
        for node in self.nodes:
            node.dir.mkdir()
            (node.dir / "rabbitmq.conf").write_text(CONF)
            self._spawn(node)
        for node in self.nodes:
            self.wait_up(node)
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", self.nodes[0].name)
            self.ctl(node, "start_app")
        running = self.running_nodes()
        assert running == {n.name for n in self.nodes}, running

    def _spawn(self, node: Node) -> None:
        out = open(node.dir / "stdout.log", "ab")
        try:
            node.proc = subprocess.Popen([str(SBIN / "rabbitmq-server")], env=self.env(node), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()

    def wait_up(self, node: Node, timeout: float = 120) -> None:
        """Until the node's AMQP port answers (cheaper than a CLI call, which boots a VM)."""
        deadline = time.monotonic() + timeout
        while True:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: see {node.dir / 'stdout.log'}")
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", node.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not open port {node.port} within {timeout}s")
            time.sleep(0.5)

    def kill(self, node: Node) -> None:
        """The node dies at once (SIGKILL to its process group): no clean leave."""
        assert node.proc is not None
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=30)

    def restart(self, node: Node) -> None:
        """Start a killed node again on its data: it rejoins the cluster by itself."""
        self._spawn(node)
        self.wait_up(node)

    def running_nodes(self, via: Node | None = None) -> set[str]:
        status = json.loads(self.ctl(via or self.nodes[0], "cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def quorum_queues(self, via: Node | None = None) -> list[dict]:
        out = self.ctl(via or self.nodes[0], "list_queues", "name", "type", "members", "online", "leader",
                       "messages", "--formatter", "json")
        return [q for q in json.loads(out) if q["type"] == "quorum"]

    def close(self) -> None:
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in running:
            os.killpg(node.proc.pid, signal.SIGTERM)  # the script stops the Erlang VM cleanly
        for node in running:
            try:
                node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.proc.pid, signal.SIGKILL)  # the node's own group: script, VM, helpers
                node.proc.wait(timeout=10)
