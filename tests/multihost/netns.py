"""Hosts on this one machine: network namespaces on a bridge, each with an address of its own.

``Hosts(["a", "b"])`` makes a namespace per host plus one acting as the switch (a bridge, so the
machine's own network is left alone); host *i* gets ``10.77.0.(i+1)/24`` on its ``eth0``, a veth
whose peer is a port of the bridge. Processes run on a host under ``ip netns exec``. Needs root
and iproute2; ``unavailable()`` says why not, for a clean skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

SUBNET = "10.77.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"mlq-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` is not permitted here: {getattr(exc, 'stderr', '') or exc}".strip()
    _ip("netns", "del", probe)
    return None


class Hosts:
    def __init__(self, names: list[str]) -> None:
        self.tag = uuid.uuid4().hex[:6]  # names of our own, so parallel runs never meet
        self.names = names
        self.switch = f"mlq-{self.tag}-sw"
        self.made: list[str] = []

    def ns(self, name: str) -> str:
        return f"mlq-{self.tag}-{name}"

    def address(self, name: str) -> str:
        return f"{SUBNET}.{self.names.index(name) + 1}"

    def prefix(self, name: str) -> tuple[str, ...]:
        """The command prefix that runs a process on this host."""
        return ("ip", "netns", "exec", self.ns(name))

    def up(self) -> Hosts:
        try:
            self._add(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for name in self.names:
                self._add(self.ns(name))
                port = f"p-{name}"
                peer = ("peer", "name", "eth0", "netns", self.ns(name))
                _ip("-n", self.switch, "link", "add", port, "type", "veth", *peer)
                _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
                _ip("-n", self.ns(name), "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
                _ip("-n", self.ns(name), "link", "set", "eth0", "up")
                _ip("-n", self.ns(name), "link", "set", "lo", "up")
        except BaseException:
            self.down()
            raise
        return self

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def link(self, name: str, up: bool) -> None:
        """Cut (or restore) a host's only link, from inside it: its processes live on, unreachable."""
        _ip("-n", self.ns(name), "link", "set", "eth0", "up" if up else "down")

    def down(self) -> None:
        """Delete every namespace made (their veths go with them); safe to call twice."""
        while self.made:
            ns = self.made.pop()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
