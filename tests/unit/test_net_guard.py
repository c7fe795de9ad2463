"""The address policy, tested on the policy functions directly.

No test here opens a connection. Where a name must resolve, ``socket.getaddrinfo``
is replaced by a function that returns fixed addresses.
"""

import ipaddress
import socket
import time

import pytest

from nself_jobs import net_guard
from nself_jobs.errors import ConfigError, PermanentJobFailure
from nself_jobs.jobtypes.http_request import parse_url
from nself_jobs.net_guard import (
    AddressPolicy,
    HostList,
    TargetRejected,
    embedded_ipv4,
    parse_host,
    parse_ipv4_literal,
    vet_target,
)
from nself_jobs.settings import load_settings


def ip(text):
    return ipaddress.ip_address(text)


@pytest.fixture
def make_policy(tmp_path):
    def build(**environ):
        return AddressPolicy.from_settings(load_settings(environ=environ, project_dir=tmp_path))

    return build


def fake_getaddrinfo(monkeypatch, answers):
    """Make getaddrinfo return ``answers[name]`` as TCP results and record the names looked up."""
    looked_up = []

    def getaddrinfo(name, port, *args, **kwargs):
        looked_up.append(name)
        results = []
        for address in answers[name]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            results.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return results

    monkeypatch.setattr(net_guard.socket, "getaddrinfo", getaddrinfo)
    return looked_up


# -- Parsing ---------------------------------------------------------------------------------------------

ENCODED_IPV4 = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("2852039166", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("10.1.1", "10.1.0.1"),
]


@pytest.mark.parametrize(("text", "expected"), ENCODED_IPV4)
def test_ipv4_literal_encodings_parsed(text, expected):
    assert parse_ipv4_literal(text) == ip(expected)


@pytest.mark.parametrize("text", ["example.com", "0x7f.example", "1.2.3.example", "hasura", "a1"])
def test_ipv4_literal_hostnames_return_none(text):
    assert parse_ipv4_literal(text) is None


@pytest.mark.parametrize(
    "text", ["256.0.0.1", "1.2.3.256", "1.2.3.4.5", "08.0.0.1", "4294967296", "1.16777216", "example.123", "1..2"]
)
def test_ipv4_literal_invalid_numbers_raise(text):
    with pytest.raises(ValueError):
        parse_ipv4_literal(text)


def test_parse_host_names_normalised():
    assert parse_host("API.Example.COM.") == "api.example.com"
    assert parse_host("nself_hasura") == "nself_hasura"
    assert parse_host("bücher.example") == "xn--bcher-kva.example"


def test_parse_host_ipv6_forms():
    assert parse_host("::1") == ip("::1")
    assert parse_host("::ffff:169.254.169.254") == ip("::ffff:a9fe:a9fe")


@pytest.mark.parametrize("text", ["", "fe80::1%eth0", "exa mple.com", "a..b", "-bad-.com", "x" * 64 + ".com", "1.2.3.999"])
def test_parse_host_invalid_raises(text):
    with pytest.raises(ValueError):
        parse_host(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f.1:8080/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),
        ("https://169.254.43518/latest", "169.254.169.254"),
    ],
)
def test_client_url_parser_uses_guard_host(url, expected):
    target = parse_url(url)

    assert target.host == ip(expected)


def test_client_sends_canonical_host_header_for_encoded_ip():
    assert parse_url("http://0x7f.1:8080/a?b=1").host_header == "127.0.0.1:8080"
    assert parse_url("http://[::1]/").host_header == "[::1]"
    assert parse_url("https://2130706433/").request_target == "/"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]x/",
        "http://user:pass@example.com/",
        "http://example.com@127.0.0.1/",
        "http://example.com\\@127.0.0.1/",
        "http://exa mple.com/",
        "http://[fe80::1%25eth0]/",
        "http://1.2.3.999/",
        "ftp://example.com/",
        "http:///path",
        "http://example.com:0/",
        "http://example.com:99999/",
    ],
)
def test_client_url_parser_rejects_ambiguous_urls(url):
    with pytest.raises(ValueError):
        parse_url(url)


# -- IPv4 inside IPv6 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::169.254.169.254", "169.254.169.254"),
        ("::ffff:0:169.254.169.254", "169.254.169.254"),
        ("64:ff9b::169.254.169.254", "169.254.169.254"),
        ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),
        ("2002:a9fe:a9fe::1", "169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"),
    ],
)
def test_embedded_ipv4_found(address, inner):
    assert ip(inner) in embedded_ipv4(ip(address))


def test_embedded_ipv4_none_for_plain_addresses():
    assert embedded_ipv4(ip("::1")) == []
    assert embedded_ipv4(ip("2606:4700::1111")) == []
    assert embedded_ipv4(ip("127.0.0.1")) == []


# -- Default policy ---------------------------------------------------------------------------------------

METADATA_FORMS = [
    "169.254.169.254",
    "2852039166",
    "0xa9fea9fe",
    "0251.0376.0251.0376",
    "169.254.43518",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::169.254.169.254",
    "::ffff:0:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:5601:5601",
    "169.254.170.2",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
]


@pytest.mark.parametrize("host", METADATA_FORMS)
def test_default_policy_rejects_link_local_and_metadata(make_policy, host):
    policy = make_policy()

    with pytest.raises(TargetRejected) as caught:
        policy.check_literal(parse_host(host))

    assert "JOBS_HTTP_ALLOW_LINK_LOCAL" in caught.value.reason


@pytest.mark.parametrize("host", METADATA_FORMS)
def test_link_local_allowed_when_enabled(make_policy, host):
    policy = make_policy(JOBS_HTTP_ALLOW_LINK_LOCAL="true")

    policy.check_literal(parse_host(host))


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "0", "0.1.2.3", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1", "::ffff:0.0.0.0"]
)
def test_unspecified_multicast_reserved_always_rejected(make_policy, host):
    policy = make_policy(JOBS_HTTP_ALLOW_LINK_LOCAL="true", JOBS_HTTP_ALLOW_PRIVATE="true")

    with pytest.raises(TargetRejected) as caught:
        policy.check_literal(parse_host(host))

    assert "never allowed" in caught.value.reason


PRIVATE_FORMS = [
    "127.0.0.1",
    "2130706433",
    "0x7f.1",
    "127.1",
    "10.0.0.5",
    "172.16.0.1",
    "192.168.1.10",
    "100.64.0.1",
    "198.18.0.1",
    "::1",
    "fd12:3456::1",
    "::ffff:10.0.0.5",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
]


@pytest.mark.parametrize("host", PRIVATE_FORMS)
def test_private_allowed_by_default(make_policy, host):
    make_policy().check_literal(parse_host(host))


@pytest.mark.parametrize("host", PRIVATE_FORMS)
def test_private_rejected_when_disallowed(make_policy, host):
    policy = make_policy(JOBS_HTTP_ALLOW_PRIVATE="false")

    with pytest.raises(TargetRejected) as caught:
        policy.check_literal(parse_host(host))

    assert "JOBS_HTTP_ALLOW_PRIVATE" in caught.value.reason


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "example.com"])
def test_public_allowed_when_private_disallowed(make_policy, host):
    make_policy(JOBS_HTTP_ALLOW_PRIVATE="false").check_literal(parse_host(host))


def test_rejection_is_permanent_failure(make_policy):
    with pytest.raises(PermanentJobFailure):
        make_policy().check_literal(parse_host("169.254.169.254"))


# -- Allow and deny lists ---------------------------------------------------------------------------------


def test_deny_list_matches_names_wildcards_and_networks(make_policy):
    policy = make_policy(JOBS_HTTP_DENY_HOSTS="evil.example, *.internal.example, 203.0.113.0/24, 198.51.100.7")

    for host in ("evil.example", "a.internal.example", "b.a.internal.example", "203.0.113.9", "198.51.100.7"):
        with pytest.raises(TargetRejected) as caught:
            policy.check_literal(parse_host(host))
        assert "JOBS_HTTP_DENY_HOSTS" in caught.value.reason

    for host in ("internal.example", "notevil.example", "203.0.114.1", "198.51.100.8"):
        policy.check_literal(parse_host(host))


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1"])
def test_deny_network_sees_through_encodings(make_policy, host):
    policy = make_policy(JOBS_HTTP_DENY_HOSTS="127.0.0.0/8")

    with pytest.raises(TargetRejected):
        policy.check_literal(parse_host(host))


def test_deny_list_wins_over_allow_list(make_policy):
    policy = make_policy(JOBS_HTTP_ALLOW_HOSTS="api.example.com", JOBS_HTTP_DENY_HOSTS="api.example.com")

    with pytest.raises(TargetRejected) as caught:
        policy.check_literal("api.example.com")

    assert "JOBS_HTTP_DENY_HOSTS" in caught.value.reason


def test_allow_list_narrows_targets(make_policy):
    policy = make_policy(JOBS_HTTP_ALLOW_HOSTS="api.example.com,*.hooks.example")

    policy.check_literal("api.example.com")
    policy.check_literal("a.hooks.example")
    for host in ("other.example.com", "hooks.example"):
        with pytest.raises(TargetRejected) as caught:
            policy.check_literal(host)
        assert "JOBS_HTTP_ALLOW_HOSTS" in caught.value.reason


def test_allow_list_with_network_decides_after_resolution(make_policy):
    policy = make_policy(JOBS_HTTP_ALLOW_HOSTS="203.0.113.0/24")

    policy.check_name("anything.example")
    policy.check_address("anything.example", ip("203.0.113.5"))
    with pytest.raises(TargetRejected):
        policy.check_address("anything.example", ip("198.51.100.1"))


def test_allow_list_does_not_lift_category_checks(make_policy):
    policy = make_policy(JOBS_HTTP_ALLOW_HOSTS="hasura,169.254.169.254", JOBS_HTTP_ALLOW_PRIVATE="false")

    with pytest.raises(TargetRejected) as private:
        policy.check_address("hasura", ip("10.0.0.5"))
    with pytest.raises(TargetRejected) as metadata:
        policy.check_literal(parse_host("169.254.169.254"))

    assert "JOBS_HTTP_ALLOW_PRIVATE" in private.value.reason
    assert "JOBS_HTTP_ALLOW_LINK_LOCAL" in metadata.value.reason


def test_operator_configured_skips_allow_list_and_private_check(make_policy):
    policy = make_policy(JOBS_HTTP_ALLOW_HOSTS="api.example.com", JOBS_HTTP_ALLOW_PRIVATE="false")

    policy.check_name("hasura", operator_configured=True)
    policy.check_address("hasura", ip("10.0.0.5"), operator_configured=True)


def test_operator_configured_keeps_deny_and_link_local_checks(make_policy):
    policy = make_policy(JOBS_HTTP_DENY_HOSTS="hasura")

    with pytest.raises(TargetRejected):
        policy.check_name("hasura", operator_configured=True)
    with pytest.raises(TargetRejected):
        policy.check_address("metadata.example", ip("169.254.169.254"), operator_configured=True)


@pytest.mark.parametrize(
    ("variable", "entry"),
    [
        ("JOBS_HTTP_ALLOW_HOSTS", "10.0.0.0/33"),
        ("JOBS_HTTP_DENY_HOSTS", "bad host"),
        ("JOBS_HTTP_DENY_HOSTS", "*.10.0.0.1"),
        ("JOBS_HTTP_ALLOW_HOSTS", "1.2.3.999"),
    ],
)
def test_invalid_list_entry_raises_config_error(make_policy, variable, entry):
    with pytest.raises(ConfigError) as caught:
        make_policy(**{variable: entry})

    assert caught.value.variable == variable
    assert caught.value.value == entry


def test_invalid_flag_raises_config_error(make_policy):
    with pytest.raises(ConfigError) as caught:
        make_policy(JOBS_HTTP_ALLOW_PRIVATE="sometimes")

    assert caught.value.variable == "JOBS_HTTP_ALLOW_PRIVATE"


def test_host_list_entries_accept_bracketed_ipv6():
    hosts = HostList.parse("JOBS_HTTP_DENY_HOSTS", ["[::1]", "fd00::/8"])

    assert hosts.match_address(ip("::1")) == "[::1]"
    assert hosts.match_address(ip("fd00::5")) == "fd00::/8"


# -- Resolution ----------------------------------------------------------------------------------------------


def test_vet_target_checks_every_resolved_address(make_policy, monkeypatch):
    fake_getaddrinfo(monkeypatch, {"mixed.example": ["93.184.216.34", "169.254.169.254"]})

    with pytest.raises(TargetRejected) as caught:
        vet_target(make_policy(), "mixed.example", 80, 5)

    assert caught.value.address == ip("169.254.169.254")


def test_vet_target_rejects_resolved_private_address(make_policy, monkeypatch):
    fake_getaddrinfo(monkeypatch, {"rebind.example": ["10.1.2.3"]})

    with pytest.raises(TargetRejected) as caught:
        vet_target(make_policy(JOBS_HTTP_ALLOW_PRIVATE="false"), "rebind.example", 443, 5)

    assert caught.value.host == "rebind.example"


def test_vet_target_returns_connectable_addresses(make_policy, monkeypatch):
    fake_getaddrinfo(monkeypatch, {"dual.example": ["93.184.216.34", "::ffff:93.184.216.35", "2606:4700::1111"]})

    addresses = vet_target(make_policy(), "dual.example", 443, 5)

    assert addresses == [ip("93.184.216.34"), ip("93.184.216.35"), ip("2606:4700::1111")]


def test_vet_target_skips_lookup_for_literal(make_policy, monkeypatch):
    looked_up = fake_getaddrinfo(monkeypatch, {})

    addresses = vet_target(make_policy(), ip("127.0.0.1"), 80, 5)

    assert addresses == [ip("127.0.0.1")]
    assert looked_up == []


def test_vet_target_rejects_denied_name_before_lookup(make_policy, monkeypatch):
    looked_up = fake_getaddrinfo(monkeypatch, {"blocked.example": ["93.184.216.34"]})

    with pytest.raises(TargetRejected):
        vet_target(make_policy(JOBS_HTTP_DENY_HOSTS="blocked.example"), "blocked.example", 80, 5)

    assert looked_up == []


def test_resolve_times_out_while_lookup_hangs(monkeypatch):
    def slow_getaddrinfo(*_args, **_kwargs):
        time.sleep(2)
        return []

    monkeypatch.setattr(net_guard.socket, "getaddrinfo", slow_getaddrinfo)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        net_guard.resolve_addresses("slow.example", 80, 0.2)

    assert time.monotonic() - started < 1.0
