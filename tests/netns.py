"""Network hosts on one machine: each host a network namespace of its own, all joined by a
bridge in a namespace of its own through veth pairs, with addresses from 192.0.2.0/24
(TEST-NET-1, reserved for documentation and tests).

Every host lives in a namespace, because connections from the root namespace into a namespace
are refused on these machines (NOTES.md). `cut(host)` sets the host's veth end on the bridge
down: its packets vanish and its connections time out, as in a real partition, rather than
being refused. Needs root and iproute2's `ip`.

Names carry the creating process's id (`rxh<pid>-<host>`), so a run never touches another
live run's namespaces, and `remove_leftovers()` deletes those of runs that died.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

PREFIX = "rxh"
SUBNET = "192.0.2"
NETMASK_BITS = 24
FIRST_ADDRESS = 10
BRIDGE = "br0"
IFNAME_MAX = 15  # the kernel's IFNAMSIZ - 1
_OURS = re.compile(rf"{PREFIX}(\d+)-\S+")


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - iproute2 with our own arguments
        ["ip", *argv], capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def require_ip() -> None:
    """Fail (not skip) with the reason when this machine cannot make network namespaces."""
    if shutil.which("ip") is None:
        pytest.fail("the network-host test needs iproute2's `ip` (apt-get install iproute2)")
    if os.geteuid() != 0:
        pytest.fail("the network-host test makes network namespaces, which needs root")


@dataclass(frozen=True)
class Host:
    """One host: its namespace, its address, and its veth end on the bridge (`peer`)."""

    name: str
    netns: str
    address: str
    peer: str

    def command(self, *argv: str) -> list[str]:
        """argv that runs `argv` on this host (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *argv]


class Network:
    """Hosts on one bridge; `create()` makes them, `remove()` deletes them and their processes."""

    def __init__(self, names: Sequence[str]) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.bridge_netns = f"{tag}-br"
        self.hosts = {
            name: Host(name, f"{tag}-{name}", f"{SUBNET}.{FIRST_ADDRESS + i}", f"{tag}{name}")
            for i, name in enumerate(names)
        }
        too_long = [h.peer for h in self.hosts.values() if len(h.peer) > IFNAME_MAX]
        if too_long:
            raise ValueError(f"interface names longer than {IFNAME_MAX} characters: {too_long}")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def cidr(self) -> str:
        return f"{SUBNET}.0/{NETMASK_BITS}"

    def create(self) -> None:
        bridge = self.bridge_netns
        ip("netns", "add", bridge)
        ip("-n", bridge, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", bridge, "link", "set", BRIDGE, "up")
        for host in self.hosts.values():
            ip("netns", "add", host.netns)
            # Both ends made in place: `peer` on the bridge, eth0 in the host's namespace.
            ip("-n", bridge, "link", "add", host.peer, "type", "veth",
               "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
            ip("-n", bridge, "link", "set", host.peer, "master", BRIDGE, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/{NETMASK_BITS}", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, name: str) -> None:
        """Partition host `name`: its link to the bridge goes down, nothing is refused."""
        ip("-n", self.bridge_netns, "link", "set", self.hosts[name].peer, "down")

    def restore(self, name: str) -> None:
        ip("-n", self.bridge_netns, "link", "set", self.hosts[name].peer, "up")

    def remove(self) -> None:
        """Kill what still runs in the namespaces, then delete them (their veths go with them)."""
        for netns in [*(h.netns for h in self.hosts.values()), self.bridge_netns]:
            delete_namespace(netns)


def delete_namespace(netns: str) -> None:
    # A namespace outlives its name while a process runs in it: kill those first.
    pids = ip("netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "del", netns, check=False)


def remove_leftovers() -> list[str]:
    """Delete the namespaces left by runs whose process is gone (a crash, a SIGKILL)."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        found = _OURS.fullmatch(line.split(" ")[0])
        if found is None:
            continue
        owner = int(found.group(1))
        if owner != os.getpid() and not _alive(owner):
            delete_namespace(found.group(0))
            removed.append(found.group(0))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """Hosts `names` on one bridge, removed at the end, also when the test fails."""
    require_ip()
    remove_leftovers()
    net = Network(names)
    try:
        net.create()
        yield net
    finally:
        net.remove()
