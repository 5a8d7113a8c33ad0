"""Download a job's image or audio from an http(s) URL without letting the URL reach private networks (SSRF).

For each hop: the host name is resolved once, every resolved address is checked (private, loopback, link-local,
multicast, reserved, unspecified and other non-public ranges are refused, IPv4-mapped / 6to4 / NAT64 IPv6 forms
are unwrapped first), and the connection is made to the checked address itself (TLS still verifies the
certificate against the host name), so a second DNS answer cannot swap in another address. Redirects are
followed by hand, at most :data:`MAX_REDIRECTS`, each one checked like the first URL. The size cap is enforced
while streaming, whatever Content-Length says. Every failure is :class:`DownloadFailed` with the HTTP status
where there is one, and never the URL's query string or credentials.

Address spellings such as ``2130706433``, ``0x7f000001`` or ``0177.0.0.1`` need no special parsing: the
resolver turns them into the address they mean, and that address is what gets checked.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Union
from urllib.parse import unquote, urljoin, urlsplit

import certifi
import urllib3

from sadtalker.core.errors import DownloadFailed
from sadtalker.worker.settings import Settings

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
USER_AGENT = "sadtalker-worker/1.0"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True)
class DownloadLimits:
    """How much and how long one download may take."""

    max_bytes: int
    # The defaults are Settings' (DOWNLOAD_*_TIMEOUT_S, ALLOW_LOOPBACK_URLS); see limits_from_settings.
    connect_timeout_s: float = Settings.download_connect_timeout_s
    # Longest wait for any single read from the server.
    read_timeout_s: float = Settings.download_read_timeout_s
    # Longest the whole download (all hops, whole body) may take, so a trickling server cannot hold a job.
    total_timeout_s: float = Settings.download_total_timeout_s
    # Loopback addresses (127.0.0.0/8, ::1) allowed: tests only.
    allow_loopback: bool = Settings.allow_loopback_urls
    # CA bundle for https; None = certifi's.
    ca_certs: Optional[str] = None


def limits_from_settings(settings: Settings, max_bytes: int) -> DownloadLimits:
    """The limits the settings give for one download of at most ``max_bytes``."""
    return DownloadLimits(
        max_bytes=max_bytes,
        connect_timeout_s=settings.download_connect_timeout_s,
        read_timeout_s=settings.download_read_timeout_s,
        total_timeout_s=settings.download_total_timeout_s,
        allow_loopback=settings.allow_loopback_urls,
    )


def refusal_reason(address: IPAddress, allow_loopback: bool = False) -> Optional[str]:
    """Why a connection to ``address`` is refused, or None when it is a public address (or allowed loopback)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal_reason(embedded, allow_loopback)
            return f"{reason} (IPv4 {embedded} carried in IPv6)" if reason else None
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
        ("is_site_local", "a site-local address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute, False):
            return reason
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, NAT64), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve_checked(
    host: str, port: int, allow_loopback: bool = False, refusal: str = "refused to download from"
) -> List[str]:
    """Resolve ``host`` and return its addresses, refusing them all if any one is not allowed.

    ``refusal`` starts the message of a refused address (the storage check says what it refuses). Resolving an
    address literal (in any spelling) does not touch the network, which is how tests check refusals.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DownloadFailed(f"could not resolve host {host!r} ({error})") from None
    addresses: List[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = refusal_reason(address, allow_loopback)
        if reason is not None:
            raise DownloadFailed(
                f"{refusal} {host!r}: it resolves to {address}, {reason}; only public internet addresses are allowed"
            )
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise DownloadFailed(f"could not resolve host {host!r} (no addresses)")
    return addresses


@dataclass(frozen=True)
class _Target:
    """One request's parts, split from a URL."""

    scheme: str
    host: str
    port: int
    host_header: str
    request_path: str
    # Safe to show: no credentials, no query string.
    shown: str
    authorization: Optional[str]

    @classmethod
    def parse(cls, url: str) -> "_Target":
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise DownloadFailed(f"not a valid URL: {scheme}://{parts.netloc.rpartition('@')[2]}") from None
        if scheme not in ("http", "https"):
            raise DownloadFailed(f"refused to follow a {scheme or 'scheme-less'} URL: only http and https are allowed")
        if not host:
            raise DownloadFailed("URL has no host name")
        port = port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            scheme=scheme,
            host=host,
            port=port,
            host_header=netloc,
            request_path=path + (f"?{parts.query}" if parts.query else ""),
            shown=f"{scheme}://{netloc}{path}"[:200],
            authorization=authorization,
        )


def fetch(url: str, limits: DownloadLimits, what: str = "file") -> bytes:
    """Download ``url`` and return its body. ``what`` names it in errors ("image_url"). Raises DownloadFailed."""
    deadline = time.monotonic() + limits.total_timeout_s
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = _Target.parse(current)
        try:
            address = resolve_checked(target.host, target.port, limits.allow_loopback)[0]
            with _request(target, address, limits, deadline) as response:
                if response.status in REDIRECT_STATUSES:
                    current = _redirect_location(current, response, target)
                    continue
                if response.status != 200:
                    raise DownloadFailed(f"HTTP {response.status} from {target.shown}")
                body = _read_capped(response, limits, deadline)
        except DownloadFailed as error:
            raise DownloadFailed(f"{what}: {error.message}") from None
        logger.info("downloaded %s: %d bytes from %s", what, len(body), target.shown)
        return body
    raise DownloadFailed(f"{what}: too many redirects (more than {MAX_REDIRECTS}); last hop {target.shown}")


def _redirect_location(current: str, response: urllib3.BaseHTTPResponse, target: _Target) -> str:
    location = response.headers.get("Location")
    if not location:
        raise DownloadFailed(f"HTTP {response.status} redirect without a Location header from {target.shown}")
    return urljoin(current, location.strip())


@contextmanager
def _request(target: _Target, address: str, limits: DownloadLimits, deadline: float) -> Iterator:
    """Open a GET to ``address`` (already checked) for ``target``; yields the un-read response."""
    remaining = max(deadline - time.monotonic(), 0.001)
    timeout = urllib3.Timeout(
        connect=min(limits.connect_timeout_s, remaining), read=min(limits.read_timeout_s, remaining)
    )
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=limits.ca_certs or certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
    headers = {"Host": target.host_header, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if target.authorization:
        headers["Authorization"] = target.authorization
    with pool, _translated_errors(target):
        response = pool.urlopen(
            "GET",
            target.request_path,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
            assert_same_host=False,
        )
        try:
            yield response
        finally:
            response.release_conn()


@contextmanager
def _translated_errors(target: _Target) -> Iterator[None]:
    """Turn transport errors into DownloadFailed with a short reason (no exception text: it may hold the URL)."""
    try:
        yield
    except urllib3.exceptions.NewConnectionError:  # before ConnectTimeoutError: urllib3 2 subclasses it
        raise DownloadFailed(f"could not connect to {target.shown}") from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise DownloadFailed(f"timed out connecting to {target.shown}") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise DownloadFailed(f"timed out waiting for data from {target.shown}") from None
    except urllib3.exceptions.SSLError:
        raise DownloadFailed(f"TLS handshake or certificate check failed for {target.shown}") from None
    except urllib3.exceptions.ProtocolError:
        raise DownloadFailed(
            f"connection broken while downloading {target.shown} (body shorter than announced?)"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise DownloadFailed(f"download from {target.shown} failed ({type(error).__name__})") from None


def _read_capped(response: urllib3.BaseHTTPResponse, limits: DownloadLimits, deadline: float) -> bytes:
    """Read the body, failing as soon as it passes the cap or the deadline."""
    too_big = f"larger than the {_megabytes(limits.max_bytes)} limit"
    announced = response.headers.get("Content-Length", "").strip()
    if announced.isdigit() and int(announced) > limits.max_bytes:
        raise DownloadFailed(f"{too_big} (Content-Length {announced})")
    chunks: List[bytes] = []
    total = 0
    while True:
        # read1 returns what has arrived (up to CHUNK_BYTES) instead of waiting for a full chunk, so the
        # deadline is checked while a slow server trickles.
        chunk = response.read1(CHUNK_BYTES, decode_content=False)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise DownloadFailed(f"{too_big} (stopped after {total} bytes)")
        if time.monotonic() > deadline:
            raise DownloadFailed(f"took longer than {limits.total_timeout_s:g} s in total")
        chunks.append(chunk)
    return b"".join(chunks)


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):.3g} MB" if n_bytes >= 1024 * 1024 else f"{n_bytes} bytes"
