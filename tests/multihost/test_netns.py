"""Where namespaces cannot be made, the multi-host tier says why (and skips) instead of failing."""

import subprocess

from tests.multihost import netns


def test_without_ip_the_reason_is_named(monkeypatch):
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    assert "iproute2" in netns.unavailable()


def test_without_root_the_reason_is_named(monkeypatch):
    monkeypatch.setattr(netns.shutil, "which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "network namespaces need root"


def test_a_refused_netns_add_is_the_reason(monkeypatch):
    def refuse(*args, **kwargs):
        why = "mount --make-shared /run/netns failed: Permission denied"
        raise subprocess.CalledProcessError(1, args[0], stderr=why)

    monkeypatch.setattr(netns.shutil, "which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.subprocess, "run", refuse)
    assert "Permission denied" in netns.unavailable()
