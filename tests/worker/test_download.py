"""Downloads: SSRF refusals (checked by resolving, never by connecting), pinning, redirects, size cap, timeouts.

A standard-library HTTP server on 127.0.0.1 plays the remote side, with loopback allowed. A guard fixture makes
any attempt to connect to an address other than 127.0.0.0/8 or ::1 fail the test before a packet is sent, so a
bug in the address checks cannot reach another machine from here.
"""

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from sadtalker.core.errors import DownloadFailed
from sadtalker.worker.download import DownloadLimits, fetch, limits_from_settings, refusal_reason, resolve_checked
from sadtalker.worker.settings import Settings

LOOPBACK_ONLY = DownloadLimits(max_bytes=10_000, allow_loopback=True, read_timeout_s=5, total_timeout_s=20)


class Handler(BaseHTTPRequestHandler):
    """Routes: /file?size=N, /chunked?size=N, /close?size=N, /lie-short, /lie-huge, /redirect?n=K,
    /redirect-to?url=U, /status?code=C, /slow, /trickle, /echo."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = getattr(self, "route_" + parts.path.strip("/").replace("-", "_"), None)
        if route is None:
            return self.send_body(404, b"no such route")
        return route(query)

    def send_body(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def route_file(self, query):
        self.send_body(200, b"x" * int(query.get("size", 100)))

    def route_chunked(self, query):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        remaining = int(query["size"])
        while remaining:
            piece = b"y" * min(remaining, 1000)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            remaining -= len(piece)
        self.wfile.write(b"0\r\n\r\n")

    def route_close(self, query):
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"z" * int(query["size"]))
        self.close_connection = True

    def route_lie_short(self, query):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"only ten b")
        self.close_connection = True

    def route_lie_huge(self, query):
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.write(b"small")
        self.close_connection = True

    def route_redirect(self, query):
        n = int(query["n"])
        target = f"/redirect?n={n - 1}" if n > 1 else "/file?size=42"
        self.send_body(302, b"", [("Location", target)])

    def route_redirect_to(self, query):
        self.send_body(int(query.get("code", 302)), b"", [("Location", query["url"])])

    def route_status(self, query):
        self.send_body(int(query["code"]), b"error page")

    def route_slow(self, query):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"a" * 10)
        self.wfile.flush()
        time.sleep(3)

    def route_trickle(self, query):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"t")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)

    def route_echo(self, query):
        body = json.dumps({key.lower(): value for key, value in self.headers.items()}).encode()
        self.send_body(200, body)


def serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    serve(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def loopback_guard(loopback_only):
    """Every test here: no connection except to loopback (tests/conftest.py)."""


@pytest.fixture
def fake_dns(monkeypatch):
    """Make chosen host names resolve to chosen address lists (one list per successive look-up)."""
    answers = {}
    lookups = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            lookups.append(host)
            queue = answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


SSRF_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("localhost", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("0x7f000001", "loopback"),  # hex
    ("0x7f.1", "loopback"),  # hex, short form
    ("0177.0.0.1", "loopback"),  # octal
    ("017700000001", "loopback"),  # octal, one number
    ("127.1", "loopback"),  # short form
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("::ffff:7f00:1", "loopback"),  # IPv4-mapped, hex
    ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("::ffff:10.1.2.3", "private"),
    ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
    ("fc00::1", "private"),  # unique local
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("::ffff:169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "private"),  # reserved (class E); Python counts it private too
    ("255.255.255.255", "private"),  # broadcast
    ("100.64.0.1", "not a public address"),  # carrier-grade NAT
    ("fec0::1", "site-local"),
]


class TestAddressChecks:
    @pytest.mark.parametrize("host, kind", SSRF_HOSTS)
    def test_non_public_spellings_are_refused_by_resolving(self, host, kind):
        with pytest.raises(DownloadFailed, match=kind):
            resolve_checked(host, 80)

    @pytest.mark.parametrize("host, kind", SSRF_HOSTS)
    def test_fetch_refuses_them_before_connecting(self, host, kind):
        literal = f"[{host}]" if ":" in host else host
        with pytest.raises(DownloadFailed, match="refused to download"):
            fetch(f"http://{literal}/x.png", DownloadLimits(max_bytes=100))

    @pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
    def test_public_addresses_pass(self, address):
        assert refusal_reason(ipaddress.ip_address(address)) is None

    @pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "2130706433"])
    def test_loopback_is_allowed_only_when_the_setting_says_so(self, host):
        assert resolve_checked(host, 80, allow_loopback=True)

    @pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "169.254.169.254", "::"])
    def test_allowing_loopback_allows_nothing_else(self, host):
        with pytest.raises(DownloadFailed):
            resolve_checked(host, 80, allow_loopback=True)

    def test_one_bad_address_among_several_refuses_the_host(self, fake_dns):
        answers, _ = fake_dns
        answers["mixed.test"] = [["93.184.216.34", "10.0.0.7"]]
        with pytest.raises(DownloadFailed, match="10.0.0.7"):
            resolve_checked("mixed.test", 80)

    def test_unresolvable_host_is_download_failed(self):
        with pytest.raises(DownloadFailed, match="could not resolve"):
            resolve_checked("name.invalid", 80)

    def test_settings_default_refuses_loopback(self):
        assert limits_from_settings(Settings.from_env({}), 5).allow_loopback is False


class TestFetching:
    def test_body_is_returned(self, server):
        assert fetch(f"{server}/file?size=1234", LOOPBACK_ONLY) == b"x" * 1234

    def test_loopback_is_refused_with_the_default_setting(self, server):
        with pytest.raises(DownloadFailed, match="loopback"):
            fetch(f"{server}/file", DownloadLimits(max_bytes=10_000))

    def test_connection_is_pinned_to_the_checked_address(self, server, fake_dns):
        answers, lookups = fake_dns
        port = urlsplit(server).port
        # First answer passes the check; a rebinding second answer would point at the metadata service.
        answers["rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
        body = fetch(f"http://rebind.test:{port}/echo", LOOPBACK_ONLY)
        assert lookups == ["rebind.test"]
        assert json.loads(body)["host"] == f"rebind.test:{port}"

    def test_request_asks_for_identity_encoding(self, server):
        headers = json.loads(fetch(f"{server}/echo", LOOPBACK_ONLY))
        assert headers["accept-encoding"] == "identity"

    def test_url_credentials_are_sent_as_basic_auth(self, server):
        port = urlsplit(server).port
        headers = json.loads(fetch(f"http://user:pa%20ss@127.0.0.1:{port}/echo", LOOPBACK_ONLY))
        assert headers["authorization"] == "Basic dXNlcjpwYSBzcw=="  # user:pa ss

    def test_http_status_is_reported_without_query_or_credentials(self, server):
        port = urlsplit(server).port
        with pytest.raises(DownloadFailed) as caught:
            fetch(f"http://user:hunter2@127.0.0.1:{port}/status?code=404&token=SECRET", LOOPBACK_ONLY, "image_url")
        message = caught.value.message
        assert "HTTP 404" in message and "image_url" in message and "/status" in message
        assert "hunter2" not in message and "SECRET" not in message and "token" not in message

    @pytest.mark.parametrize("code", [403, 500, 204])
    def test_any_status_but_200_fails(self, server, code):
        with pytest.raises(DownloadFailed, match=f"HTTP {code}"):
            fetch(f"{server}/status?code={code}", LOOPBACK_ONLY)


class TestRedirects:
    def test_a_chain_of_five_redirects_is_followed(self, server):
        assert fetch(f"{server}/redirect?n=5", LOOPBACK_ONLY) == b"x" * 42

    def test_a_sixth_redirect_is_refused(self, server):
        with pytest.raises(DownloadFailed, match="too many redirects"):
            fetch(f"{server}/redirect?n=6", LOOPBACK_ONLY)

    @pytest.mark.parametrize("code", [301, 303, 307, 308])
    def test_every_redirect_status_is_followed(self, server, code):
        assert fetch(f"{server}/redirect-to?code={code}&url=/file%3Fsize%3D7", LOOPBACK_ONLY) == b"x" * 7

    @pytest.mark.parametrize(
        "target, reason",
        [
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.0.0.1/", "private"),
            ("http://[::ffff:192.168.0.1]/", "private"),
            ("http://0x0a000001/", "private"),
            ("http://0.0.0.0:{port}/file", "unspecified"),  # 0.0.0.0 would reach this very server
            ("ftp://example.com/file", "only http and https"),
            ("file:///etc/passwd", "only http and https"),
        ],
    )
    def test_redirects_are_checked_like_the_first_url(self, server, target, reason):
        target = target.format(port=urlsplit(server).port)
        with pytest.raises(DownloadFailed, match=reason):
            fetch(f"{server}/redirect-to?url={target}", LOOPBACK_ONLY)

    def test_redirect_to_a_name_resolving_privately_is_refused(self, server, fake_dns):
        answers, _ = fake_dns
        answers["internal.test"] = [["10.1.1.1"]]
        with pytest.raises(DownloadFailed, match="private"):
            fetch(f"{server}/redirect-to?url=http://internal.test/secret", LOOPBACK_ONLY)

    def test_redirect_without_location_fails(self, server):
        with pytest.raises(DownloadFailed, match="without a Location"):
            fetch(f"{server}/status?code=302", LOOPBACK_ONLY)


class TestSizeAndTime:
    def test_body_at_the_cap_is_accepted(self, server):
        assert len(fetch(f"{server}/file?size=10000", LOOPBACK_ONLY)) == 10_000

    @pytest.mark.parametrize("route", ["file", "chunked", "close"])
    def test_body_over_the_cap_fails_whatever_the_framing(self, server, route):
        with pytest.raises(DownloadFailed, match="larger than the 10000 bytes limit"):
            fetch(f"{server}/{route}?size=10001", LOOPBACK_ONLY)

    @pytest.mark.parametrize("route", ["chunked", "close"])
    def test_bodies_without_content_length_are_read_whole(self, server, route):
        assert len(fetch(f"{server}/{route}?size=5000", LOOPBACK_ONLY)) == 5000

    def test_a_huge_content_length_fails_before_reading(self, server):
        with pytest.raises(DownloadFailed, match="Content-Length 1000000000000"):
            fetch(f"{server}/lie-huge", LOOPBACK_ONLY)

    def test_a_body_shorter_than_announced_fails(self, server):
        with pytest.raises(DownloadFailed, match="connection broken"):
            fetch(f"{server}/lie-short", LOOPBACK_ONLY)

    def test_a_stalled_body_hits_the_read_timeout(self, server):
        limits = DownloadLimits(max_bytes=10_000, allow_loopback=True, read_timeout_s=0.3)
        with pytest.raises(DownloadFailed, match="timed out waiting for data"):
            fetch(f"{server}/slow", limits)

    def test_a_trickling_body_hits_the_total_deadline(self, server):
        limits = DownloadLimits(max_bytes=10_000, allow_loopback=True, read_timeout_s=2, total_timeout_s=0.5)
        with pytest.raises(DownloadFailed, match="timed out|longer than 0.5 s"):
            fetch(f"{server}/trickle", limits)

    def test_a_closed_port_is_download_failed(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(DownloadFailed, match="could not connect"):
            fetch(f"http://127.0.0.1:{port}/x", LOOPBACK_ONLY)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for the name files.test, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "files.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("files.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def tls_server(tls_files):
    cert, key = tls_files
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    serve(httpd)
    yield httpd.server_address[1], str(cert)
    httpd.shutdown()
    httpd.server_close()


class TestHttps:
    def test_pinned_https_still_verifies_the_certificate_against_the_host_name(self, tls_server, fake_dns):
        port, ca = tls_server
        answers, lookups = fake_dns
        answers["files.test"] = [["127.0.0.1"], ["169.254.169.254"]]
        limits = DownloadLimits(max_bytes=10_000, allow_loopback=True, ca_certs=ca)
        assert fetch(f"https://files.test:{port}/file?size=9", limits) == b"x" * 9
        assert lookups == ["files.test"]

    def test_a_certificate_for_another_name_is_refused(self, tls_server, fake_dns):
        port, ca = tls_server
        answers, _ = fake_dns
        answers["other.test"] = [["127.0.0.1"]]
        limits = DownloadLimits(max_bytes=10_000, allow_loopback=True, ca_certs=ca)
        with pytest.raises(DownloadFailed, match="TLS"):
            fetch(f"https://other.test:{port}/file", limits)

    def test_an_untrusted_certificate_is_refused(self, tls_server, fake_dns):
        port, _ = tls_server
        answers, _ = fake_dns
        answers["files.test"] = [["127.0.0.1"]]
        with pytest.raises(DownloadFailed, match="TLS"):
            fetch(f"https://files.test:{port}/file", DownloadLimits(max_bytes=10_000, allow_loopback=True))
