"""Address policy for outgoing HTTP requests made by jobs.

A job payload can name any URL, so every target passes this policy before a
connection is opened. The settings, all read through ``Settings.env``:

``JOBS_HTTP_ALLOW_HOSTS`` (default empty)
    Comma list of entries. When it is set, a target must match an entry. An entry
    is a hostname (``api.example.com``), a wildcard (``*.example.com`` matches every
    subdomain but not ``example.com`` itself), an IP address or a CIDR network
    (``203.0.113.0/24``). The list only narrows: a matching entry does not lift the
    private or link-local checks below.
``JOBS_HTTP_DENY_HOSTS`` (default empty)
    Comma list with the same entry forms. A match rejects the target, and the deny
    list wins over everything else.
``JOBS_HTTP_ALLOW_PRIVATE`` (default true)
    Private, loopback and other non-public addresses (10/8, 172.16/12, 192.168/16,
    100.64/10, 127/8, fc00::/7, ::1 and any address that ``ipaddress`` does not
    consider global). They are allowed by default because a self-hosted stack calls
    its own services on such addresses. Set false to reject them.
``JOBS_HTTP_ALLOW_LINK_LOCAL`` (default false)
    Link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata services
    (169.254.169.254, fd00:ec2::254, 100.100.100.200) are rejected unless this is
    true, because a metadata service can hand out the instance's cloud credentials.

Unspecified (0.0.0.0/8, ::), multicast and reserved (240.0.0.0/4) addresses are
always rejected.

How the checks run:

* The host is parsed the way ``inet_aton`` and the WHATWG URL standard parse it, so
  ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` are all 127.0.0.1. A host
  whose last label is a number but is no valid IPv4 address is invalid, not a name.
* Hostnames are matched against the lists first, then resolved. Every resolved
  address must pass, otherwise the whole target is rejected.
* An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-compatible,
  IPv4-translated, 6to4, NAT64 ``64:ff9b::/96``, Teredo) is checked both as itself
  and as the IPv4 address inside it. The stricter result wins.
* :func:`vet_target` returns the checked addresses, and the HTTP client connects to
  one of them instead of resolving the name again. So a DNS answer that changes
  between check and connect (DNS rebinding) cannot redirect the connection. The
  name still goes into the Host header and TLS SNI.
* The HTTP client runs the same checks on every redirect hop.

Settings-defined targets (the Hasura endpoint and action handler URLs of custom
jobs) are checked with ``operator_configured=True``. Their host was chosen by the
operator, not by a job payload, so the allow list and the private check do not
apply to them, but the deny list, the link-local check and DNS pinning do.

HTTP proxies from ``HTTP_PROXY`` and similar variables are not used.
"""

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass

from .errors import ConfigError, PermanentJobFailure

_UNSPECIFIED = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "::/128"))
_MULTICAST = tuple(ipaddress.ip_network(n) for n in ("224.0.0.0/4", "ff00::/8"))
_RESERVED = (ipaddress.ip_network("240.0.0.0/4"),)
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
# Metadata services outside the link-local ranges: AWS IMDS over IPv6 and Alibaba Cloud.
# AWS, GCP and Azure serve metadata at 169.254.169.254, which _LINK_LOCAL covers.
_METADATA = tuple(ipaddress.ip_network(n) for n in ("fd00:ec2::254/128", "100.100.100.200/32"))
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
        "fec0::/10",
        # NAT64 local-use prefix (RFC 8215), not globally routable.
        "64:ff9b:1::/48",
    )
)

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

_FORBIDDEN = "forbidden"
_LINK_LOCAL_CATEGORY = "link-local"
_PRIVATE_CATEGORY = "private"
_PUBLIC = "public"

_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV4_NUMBER_LABEL = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")

RESOLVE_NOT_FOUND_CODES = (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))


class TargetRejected(PermanentJobFailure):
    """Raised when the address policy rejects a target.

    It is a PermanentJobFailure, so the queue fails the job without retrying it.
    """

    def __init__(self, host, address, reason):
        self.host = host
        self.address = address
        self.reason = reason
        target = host if address is None or str(address) == host else f"{host} ({address})"
        super().__init__(f"request to {target} rejected: {reason}")


def _in_any(address, networks):
    return any(address.version == network.version and address in network for network in networks)


# -- Parsing hosts -------------------------------------------------------------------------


def _parse_ipv4_number(part, invalid):
    """Return the value of one dotted part in inet_aton notation, or None when it is not a number."""
    if not _IPV4_NUMBER_LABEL.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        if not re.fullmatch(r"[0-7]+", part):
            raise ValueError(f"{invalid}: {part!r} starts with 0 but is not an octal number")
        return int(part, 8)
    return int(part)


def parse_ipv4_literal(text):
    """Parse an IPv4 address in any form that ``inet_aton`` accepts, or return None for a hostname.

    Dotted parts may be decimal, octal (leading 0) or hex (0x). With fewer than four
    parts the last one fills the remaining bytes, so ``127.1`` and ``2130706433`` are
    127.0.0.1. Raises ValueError when the text ends in a number but is no valid address.
    """
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not _IPV4_NUMBER_LABEL.fullmatch(parts[-1]):
        return None
    invalid = f"{text!r} is not a valid IPv4 address"
    if len(parts) > 4:
        raise ValueError(f"{invalid}: it has more than four dotted parts")

    numbers = []
    for part in parts:
        number = _parse_ipv4_number(part, invalid)
        if number is None:
            raise ValueError(f"{invalid}: it ends in a number but {part!r} is not one")
        numbers.append(number)

    *leading, last = numbers
    if any(number > 255 for number in leading):
        raise ValueError(f"{invalid}: a part is larger than 255")
    if last >= 256 ** (4 - len(leading)):
        raise ValueError(f"{invalid}: the last part {last} is larger than {256 ** (4 - len(leading)) - 1}")

    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_host(host):
    """Return the host as an ``ip_address`` or as a lower-case ASCII hostname without a trailing dot.

    ``host`` is a URL's host without brackets, as ``urlsplit().hostname`` returns it.
    Raises ValueError for anything else, including IPv6 zone ids.
    """
    if not host:
        raise ValueError("the host is empty")
    if ":" in host:
        if "%" in host:
            raise ValueError(f"IPv6 zone ids such as in {host!r} are not supported")
        return ipaddress.IPv6Address(host)

    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as error:
        raise ValueError(f"{host!r} is not a valid hostname ({error})") from None

    address = parse_ipv4_literal(ascii_host)
    if address is not None:
        return address

    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{host!r} is not a valid hostname")
    return name


def embedded_ipv4(address):
    """Return the IPv4 addresses that an IPv6 address carries, for any transition format."""
    if address.version != 6:
        return []
    found = []
    low_32_bits = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    elif address in _IPV4_TRANSLATED:
        found.append(low_32_bits)
    elif address in _IPV4_COMPATIBLE and int(address) > 1:
        found.append(low_32_bits)
    # NOTE: for 64:ff9b:1::/48 only the /96 layout is decoded. A translator using a
    # shorter prefix places the IPv4 address elsewhere, and the private check applies.
    elif any(address in network for network in _NAT64):
        found.append(low_32_bits)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def connectable_address(address):
    """Return the address to connect to: the IPv4 address for an IPv4-mapped IPv6 one."""
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# -- Host lists --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostList:
    """Parsed entries of ``JOBS_HTTP_ALLOW_HOSTS`` or ``JOBS_HTTP_DENY_HOSTS``."""

    variable: str
    names: tuple = ()
    suffixes: tuple = ()
    networks: tuple = ()

    @classmethod
    def parse(cls, variable, entries):
        """Parse the entries, raising ConfigError that names ``variable`` for an invalid one."""
        names, suffixes, networks = [], [], []
        for entry in entries:
            try:
                if "/" in entry:
                    networks.append((ipaddress.ip_network(entry, strict=False), entry))
                elif entry.startswith("*."):
                    suffix = parse_host(entry[2:])
                    if not isinstance(suffix, str):
                        raise ValueError("a wildcard needs a domain name")
                    suffixes.append(("." + suffix, entry))
                else:
                    host = parse_host(entry.strip("[]"))
                    if isinstance(host, str):
                        names.append((host, entry))
                    else:
                        networks.append((ipaddress.ip_network(host), entry))
            except ValueError as error:
                raise ConfigError(
                    variable,
                    entry,
                    f"a hostname, *.domain wildcard, IP address or CIDR network ({error})",
                ) from None
        return cls(variable, tuple(names), tuple(suffixes), tuple(networks))

    def __bool__(self):
        return bool(self.names or self.suffixes or self.networks)

    def match_name(self, name):
        """Return the entry that matches hostname ``name``, or None."""
        for pattern, entry in self.names:
            if name == pattern:
                return entry
        for suffix, entry in self.suffixes:
            if name.endswith(suffix):
                return entry
        return None

    def match_address(self, address):
        """Return the entry whose network contains ``address`` or an IPv4 address inside it, or None."""
        candidates = [address, *embedded_ipv4(address)]
        for network, entry in self.networks:
            if any(_in_any(candidate, [network]) for candidate in candidates):
                return entry
        return None


# -- The policy ------------------------------------------------------------------------------


def _category(address):
    if _in_any(address, _UNSPECIFIED + _MULTICAST + _RESERVED):
        return _FORBIDDEN
    if _in_any(address, _LINK_LOCAL + _METADATA):
        return _LINK_LOCAL_CATEGORY
    if _in_any(address, _PRIVATE) or not address.is_global:
        return _PRIVATE_CATEGORY
    return _PUBLIC


def address_categories(address):
    """Return the categories of ``address`` and of every IPv4 address inside it.

    An IPv4-mapped address is judged by its IPv4 address alone, because that is where
    a connection goes, and Python versions disagree on ``is_global`` for the mapped form.
    """
    address = connectable_address(address)
    return {_category(candidate) for candidate in [address, *embedded_ipv4(address)]}


@dataclass(frozen=True)
class AddressPolicy:
    """The target address policy. The module docstring describes each setting."""

    allow_hosts: HostList
    deny_hosts: HostList
    allow_private: bool = True
    allow_link_local: bool = False

    @classmethod
    def from_settings(cls, settings):
        """Build the policy from ``settings.env``. Raises ConfigError for an invalid setting."""
        env = settings.env
        return cls(
            allow_hosts=HostList.parse("JOBS_HTTP_ALLOW_HOSTS", env.list("JOBS_HTTP_ALLOW_HOSTS")),
            deny_hosts=HostList.parse("JOBS_HTTP_DENY_HOSTS", env.list("JOBS_HTTP_DENY_HOSTS")),
            allow_private=env.bool("JOBS_HTTP_ALLOW_PRIVATE", True),
            allow_link_local=env.bool("JOBS_HTTP_ALLOW_LINK_LOCAL", False),
        )

    def check_name(self, name, operator_configured=False):
        """Raise TargetRejected when hostname ``name`` is rejected before any DNS lookup.

        A name that matches no allow entry is rejected here only when the allow list has
        no networks, because otherwise a resolved address may still match one.
        """
        denied_by = self.deny_hosts.match_name(name)
        if denied_by is not None:
            raise TargetRejected(name, None, f"it matches JOBS_HTTP_DENY_HOSTS entry {denied_by!r}")
        if operator_configured or not self.allow_hosts or self.allow_hosts.networks:
            return
        if self.allow_hosts.match_name(name) is None:
            raise TargetRejected(name, None, "it is not in JOBS_HTTP_ALLOW_HOSTS")

    def check_address(self, host, address, operator_configured=False):
        """Raise TargetRejected unless ``address``, resolved from ``host``, may be connected to.

        ``host`` is the parsed host, a hostname string or the address itself.
        """
        denied_by = self.deny_hosts.match_address(address)
        if denied_by is not None:
            raise TargetRejected(str(host), address, f"it matches JOBS_HTTP_DENY_HOSTS entry {denied_by!r}")

        if self.allow_hosts and not operator_configured:
            by_name = isinstance(host, str) and self.allow_hosts.match_name(host) is not None
            if not by_name and self.allow_hosts.match_address(address) is None:
                raise TargetRejected(str(host), address, "it is not in JOBS_HTTP_ALLOW_HOSTS")

        categories = address_categories(address)
        if _FORBIDDEN in categories:
            raise TargetRejected(
                str(host), address, "it is an unspecified, multicast or reserved address, which is never allowed"
            )
        if _LINK_LOCAL_CATEGORY in categories and not self.allow_link_local:
            raise TargetRejected(
                str(host),
                address,
                "it is a link-local or cloud metadata address; set JOBS_HTTP_ALLOW_LINK_LOCAL=true to allow it",
            )
        if _PRIVATE_CATEGORY in categories and not self.allow_private and not operator_configured:
            raise TargetRejected(
                str(host),
                address,
                "it is a private, loopback or other non-public address and JOBS_HTTP_ALLOW_PRIVATE is false",
            )

    def check_literal(self, host, operator_configured=False):
        """Check a parsed host without DNS: the address of an IP literal, or the name of a hostname."""
        if isinstance(host, str):
            self.check_name(host, operator_configured)
        else:
            self.check_address(host, host, operator_configured)


# -- Resolution --------------------------------------------------------------------------------


def resolve_addresses(name, port, timeout_s):
    """Resolve ``name`` with getaddrinfo and return its distinct addresses in the resolver's order.

    The lookup runs in a daemon thread so that the caller waits at most ``timeout_s``
    seconds. Raises TimeoutError when that passes and ``socket.gaierror`` when the
    lookup fails. A lookup that times out keeps its thread until the resolver returns.
    """
    outcome = {}

    def lookup():
        try:
            outcome["infos"] = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=lookup, name=f"resolve {name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"resolving {name} timed out")
    if "error" in outcome:
        raise outcome["error"]

    addresses = []
    for family, _type, _proto, _canonname, sockaddr in outcome["infos"]:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def vet_target(policy, host, port, timeout_s, operator_configured=False):
    """Resolve ``host`` and return the addresses the client may connect to.

    ``host`` is the output of :func:`parse_host`. Every address is checked, and one
    rejected address rejects the target, because a name that also points at a
    private or metadata address is not trusted with the others. Raises
    TargetRejected, TimeoutError or ``socket.gaierror``.
    """
    policy.check_literal(host, operator_configured)
    if isinstance(host, str):
        addresses = resolve_addresses(host, port, timeout_s)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    else:
        addresses = [host]

    for address in addresses:
        policy.check_address(host, address, operator_configured)
    return [connectable_address(address) for address in addresses]
