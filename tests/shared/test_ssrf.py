"""The SSRF guard. Nothing here connects anywhere: literals are checked as they are, host names
resolve through a monkeypatched ``socket.getaddrinfo``."""

from __future__ import annotations

import socket

import pytest

from shared.errors import InvalidInput
from shared.ssrf import UrlRefused, check_url, forbidden_reason

FORBIDDEN = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # carrier-grade NAT
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "0.0.0.0",
    "224.0.0.1",
    "239.1.2.3",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fd00:ec2::254",  # EC2 metadata over IPv6
    "fc00::1",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "::7f00:1",  # IPv4-compatible (deprecated)
    "2001:db8::1",
]

PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"]


def bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


@pytest.fixture
def no_dns(monkeypatch):
    """Any real lookup fails the test: literals must never need one."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected DNS lookup {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def fake_dns(monkeypatch):
    """Resolve names from a table; anything else does not exist."""
    table: dict[str, list[str]] = {}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in table[host]:
            if ":" in ip:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.mark.parametrize("ip", FORBIDDEN)
def test_forbidden_literals_are_refused(ip, no_dns):
    assert forbidden_reason(ip)
    with pytest.raises(UrlRefused) as info:
        check_url(f"http://{bracket(ip)}:8080/hook", allow_private=False)
    assert isinstance(info.value, InvalidInput)
    assert info.value.status_code == 422 and info.value.code == "webhook_url_refused"
    assert "refused" in info.value.detail and not info.value.retryable


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_literals_are_accepted_without_a_lookup_or_a_connection(ip, no_dns):
    assert forbidden_reason(ip) is None
    target = check_url(f"https://{bracket(ip)}/hook?x=1#frag", allow_private=False)
    assert target.scheme == "https" and target.port == 443 and target.path_and_query == "/hook?x=1"
    assert target.ip == target.host


def test_reasons_say_what_was_wrong():
    assert "metadata" in forbidden_reason("169.254.169.254")
    assert "loopback" in forbidden_reason("::1")
    assert "100.64.0.0/10" in forbidden_reason("100.64.0.1")
    assert "169.254.169.254" in forbidden_reason("64:ff9b::a9fe:a9fe")
    assert "127.0.0.1" in forbidden_reason("::ffff:127.0.0.1")


def test_host_name_resolving_to_a_public_address(fake_dns):
    fake_dns["hooks.example.com"] = ["93.184.216.34"]
    target = check_url("https://Hooks.Example.com:8443/a/b?c=d", allow_private=False)
    assert (target.host, target.port, target.ip) == ("hooks.example.com", 8443, "93.184.216.34")
    assert target.connect_url == "https://93.184.216.34:8443/a/b?c=d"
    assert target.host_header == "hooks.example.com:8443"


def test_ipv6_target_is_bracketed_and_the_default_port_is_left_out_of_host(fake_dns):
    fake_dns["v6.example.com"] = ["2606:4700:4700::1111"]
    target = check_url("http://v6.example.com/hook", allow_private=False)
    assert target.connect_url == "http://[2606:4700:4700::1111]:80/hook"
    assert target.host_header == "v6.example.com"


@pytest.mark.parametrize(
    "addresses", [["10.0.0.5"], ["169.254.169.254"], ["fd00:ec2::254"], ["::ffff:192.168.0.1"], ["127.0.0.1"]]
)
def test_host_name_resolving_to_a_forbidden_address(fake_dns, addresses):
    fake_dns["internal.example.com"] = addresses
    with pytest.raises(UrlRefused, match="resolves to"):
        check_url("http://internal.example.com/", allow_private=False)


@pytest.mark.parametrize("order", [["93.184.216.34", "10.0.0.1"], ["10.0.0.1", "93.184.216.34"]])
def test_a_name_mixing_public_and_private_answers_is_refused(fake_dns, order):
    fake_dns["rebind.example.com"] = order
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.1"):
        check_url("https://rebind.example.com/hook", allow_private=False)


def test_unresolvable_host_is_refused_and_may_be_retried(fake_dns):
    with pytest.raises(UrlRefused, match="did not resolve") as info:
        check_url("https://nowhere.invalid/hook", allow_private=False)
    assert info.value.retryable


def test_allow_private_lifts_the_address_check(fake_dns):
    fake_dns["localhost"] = ["127.0.0.1", "::1"]
    target = check_url("http://localhost:9999/hook", allow_private=True)
    assert target.ip == "127.0.0.1" and target.connect_url == "http://127.0.0.1:9999/hook"
    assert target.host_header == "localhost:9999"
    assert check_url("http://[::1]:9999/", allow_private=True).connect_url == "http://[::1]:9999/"
    assert check_url("http://169.254.169.254/", allow_private=True).ip == "169.254.169.254"
    with pytest.raises(UrlRefused):
        check_url("http://localhost:9999/hook", allow_private=False)


def test_numeric_host_forms_are_judged_by_what_they_resolve_to(fake_dns):
    # inet_aton forms such as 2130706433 or 127.1 are not IP literals to ``ipaddress`` but
    # resolve to 127.0.0.1: the resolved address is what is checked (and connected to).
    fake_dns["2130706433"] = ["127.0.0.1"]
    fake_dns["127.1"] = ["127.0.0.1"]
    for url in ("http://2130706433/", "http://127.1/"):
        with pytest.raises(UrlRefused, match="loopback"):
            check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://93.184.216.34/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://93.184.216.34:70/_x", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("//93.184.216.34/x", "scheme"),
        ("http://user:pass@93.184.216.34/x", "credentials"),
        ("http://user@93.184.216.34/x", "credentials"),
        ("http:///x", "no host"),
        ("http://", "no host"),
        ("", "empty"),
        ("http://93.184.216.34:0/", "port"),
        ("http://93.184.216.34:99999/", "malformed"),
        ("http://93.184.216.34/a b", "whitespace"),
        ("http://93.184.216.34/\r\nX-Injected: 1", "control"),
        ("http://[fe80::1%25eth0]/", "zone"),
    ],
)
def test_malformed_or_disallowed_urls_are_refused(url, why, no_dns):
    with pytest.raises(UrlRefused, match=why):
        check_url(url, allow_private=True)
