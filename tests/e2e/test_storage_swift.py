"""Storage against a real S3 server: OpenStack Swift with s3api (Debian packages) on 127.0.0.1.

Swift checks SigV4 signatures and presigned-URL expiry the way R2 does, which a mock would not. The session
fixture ``swift`` runs ``tests/support/swift_server.sh start`` once (configs and rings in a pytest temp folder, free
ports), waits for ``/healthcheck``, and runs ``tests/support/swift_server.sh stop`` after the last test. Without the
Swift packages the tests fail (they are part of what ``make test`` installs), they are never skipped.
"""

import base64
import dataclasses
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sadtalker.core.errors import UploadFailed
from sadtalker.weights import table as weight_table
from sadtalker.worker.settings import Settings
from sadtalker.worker.startup import StartupError, run_checks
from sadtalker.worker.storage import StorageConfig, check_destination, make_client, upload_video
from tests.support import REPO_ROOT
from tests.support.workerproc import fake_animate

pytestmark = pytest.mark.slow  # a real S3 server: `make test-fast` leaves it out

SCRIPT = REPO_ROOT / "tests" / "support" / "swift_server.sh"
PROGRAMS = (
    "swift-proxy-server",
    "swift-object-server",
    "swift-container-server",
    "swift-account-server",
    "swift-ring-builder",
    "memcached",
)
START_TIMEOUT_S = 90
VIDEO = os.urandom(300_000)


@dataclass(frozen=True)
class Swift:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    started_in_s: float

    def config(self, bucket: str, **overrides) -> StorageConfig:
        config = StorageConfig(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            bucket_name=bucket,
            max_attempts=2,
        )
        return dataclasses.replace(config, **overrides)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_healthy(url, root, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((root / "log").glob("*.log")))
    pytest.fail(f"Swift did not answer {url} within {START_TIMEOUT_S} s; its logs:\n{logs}")


@pytest.fixture(scope="session")
def swift(tmp_path_factory):
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        pytest.fail(
            f"the S3 integration test needs OpenStack Swift and memcached; missing: {', '.join(missing)}. "
            "`make test` installs them when run as root, or: apt-get install -y --no-install-recommends "
            "swift-proxy swift-account swift-container swift-object memcached"
        )
    root = tmp_path_factory.mktemp("swift")
    proxy, memcache, obj, container, account = free_ports(5)
    env = {
        **os.environ,
        "SWIFT_ROOT": str(root),
        "SWIFT_PORT": str(proxy),
        "SWIFT_MEMCACHE_PORT": str(memcache),
        "SWIFT_OBJECT_PORT": str(obj),
        "SWIFT_CONTAINER_PORT": str(container),
        "SWIFT_ACCOUNT_PORT": str(account),
        "SWIFT_ACCOUNT": "r2",
        "SWIFT_USER": "uploader",
        "SWIFT_SECRET": "swift-test-secret",
    }
    started = time.monotonic()
    subprocess.run([str(SCRIPT), "start"], env=env, check=True, timeout=60)
    try:
        wait_healthy(f"http://127.0.0.1:{proxy}/healthcheck", root, started + START_TIMEOUT_S)
        elapsed = time.monotonic() - started
        sys.stderr.write(f"\n[swift] up in {elapsed:.1f} s on 127.0.0.1:{proxy}\n")
        yield Swift(f"http://127.0.0.1:{proxy}", "r2:uploader", "swift-test-secret", elapsed)
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, check=False, timeout=30)


@pytest.fixture(scope="session")
def bucket(swift):
    name = "sadtalker-test"
    make_client(swift.config(name)).create_bucket(Bucket=name)
    return name


@pytest.fixture
def video_file(tmp_path):
    path = tmp_path / "result.mp4"
    path.write_bytes(VIDEO)
    return path


def test_presigned_url_returns_the_exact_bytes_to_a_plain_get(swift, bucket, video_file):
    delivery = upload_video(str(video_file), swift.config(bucket), "job-exact")
    assert delivery.key == "sadtalker/results/job-exact.mp4"
    response = requests.get(delivery.url, timeout=30)
    assert response.status_code == 200
    assert response.content == VIDEO
    assert response.headers["Content-Type"] == "video/mp4"


def test_a_wrong_secret_is_refused(swift, bucket, video_file):
    wrong = swift.config(bucket, secret_access_key="not-the-secret")
    with pytest.raises(UploadFailed) as caught:
        upload_video(str(video_file), wrong, "job-wrong-secret")
    message = caught.value.message
    assert "SignatureDoesNotMatch" in message and repr(bucket) in message
    assert "not-the-secret" not in message and swift.secret_access_key not in message


def test_an_unknown_access_key_is_refused(swift, bucket, video_file):
    with pytest.raises(UploadFailed, match="HTTP 403"):
        upload_video(str(video_file), swift.config(bucket, access_key_id="r2:nobody"), "job-unknown-key")


def test_a_presigned_url_stops_working_when_it_expires(swift, bucket, video_file):
    short = upload_video(str(video_file), swift.config(bucket, presign_expires_s=1), "job-expiry")
    long = make_client(swift.config(bucket)).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": short.key}, ExpiresIn=3600
    )
    time.sleep(2.5)
    assert requests.get(short.url, timeout=30).status_code == 403
    assert requests.get(long, timeout=30).content == VIDEO  # same object, still valid URL


def test_a_tampered_signature_is_refused(swift, bucket, video_file):
    delivery = upload_video(str(video_file), swift.config(bucket), "job-tamper")
    signature_at = delivery.url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if delivery.url[signature_at] != "0" else "1"
    tampered = delivery.url[:signature_at] + flipped + delivery.url[signature_at + 1 :]
    assert requests.get(tampered, timeout=30).status_code == 403


def test_the_object_is_not_readable_without_a_signature(swift, bucket, video_file):
    delivery = upload_video(str(video_file), swift.config(bucket), "job-anonymous")
    response = requests.get(f"{swift.endpoint_url}/{bucket}/{delivery.key}", timeout=30)
    assert response.status_code >= 400 and VIDEO not in response.content  # Swift answers 400 here, R2 403


def test_a_missing_bucket_is_upload_failed_with_its_code(swift, video_file):
    with pytest.raises(UploadFailed, match="NoSuchBucket"):
        upload_video(str(video_file), swift.config("no-such-bucket"), "job-missing-bucket")


@pytest.fixture
def job_handler(monkeypatch):
    """handler.handler with the pipeline double (a real 1 s MP4, no model); records whether it ran."""
    import handler

    renders = []

    def animate(*args, **kwargs):
        renders.append(time.monotonic())
        return fake_animate(*args, **kwargs)

    monkeypatch.setitem(sys.modules, "sadtalker.pipeline", types.SimpleNamespace(animate=animate))
    monkeypatch.setattr(handler, "_BUNDLE", object())
    monkeypatch.setattr(handler, "_send_progress", lambda job, payload: None)
    monkeypatch.setenv("ALLOW_LOOPBACK_URLS", "true")  # the job's endpoint is this loopback Swift
    for name in ("R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    image = REPO_ROOT / "assets" / "astronaut.jpg"
    audio = REPO_ROOT / "assets" / "speech.wav"
    media = {
        "image_base64": base64.b64encode(image.read_bytes()).decode(),
        "audio_base64": base64.b64encode(audio.read_bytes()).decode(),
    }

    def run(job_id, r2):
        return handler.handler({"id": job_id, "input": {**media, "r2": r2}})

    run.renders = renders
    return run


def test_handler_uploads_to_storage_given_in_the_job(swift, bucket, job_handler):
    r2 = {
        "endpoint_url": swift.endpoint_url,
        "access_key_id": swift.access_key_id,
        "secret_access_key": swift.secret_access_key,
        "bucket_name": bucket,
    }
    result = job_handler("swift-job", r2)
    assert result["success"] is True, result
    assert result["r2_key"] == "sadtalker/results/swift-job.mp4" and "video_base64" not in result
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["expires_at"])  # ISO 8601, UTC
    video = requests.get(result["video_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert swift.secret_access_key not in repr(result)


# --- The destination checked first: the check, start-up, the job, and an upload failing after the check.

WRONG_SECRET = "not-the-swift-secret-42"


def closed_port():
    (port,) = free_ports(1)
    return port


def test_the_check_passes_on_a_real_bucket(swift, bucket):
    check_destination(swift.config(bucket))


@pytest.mark.parametrize(
    "overrides, code, meaning",
    [
        ({"secret_access_key": WRONG_SECRET}, "SignatureDoesNotMatch", "wrong secret access key"),
        # Swift's tempauth answers an unknown key id as a bad signature (R2 and AWS say InvalidAccessKeyId).
        ({"access_key_id": "r2:nobody"}, "SignatureDoesNotMatch", "an access key id the server does not know"),
        ({"bucket_name": "no-such-bucket"}, "NoSuchBucket", "the bucket does not exist"),
    ],
)
def test_the_check_names_a_wrong_key_or_a_missing_bucket(swift, bucket, overrides, code, meaning):
    config = swift.config(bucket, **overrides)
    with pytest.raises(UploadFailed) as caught:
        check_destination(config)
    message = caught.value.message
    assert f"bucket {config.bucket_name!r} does not take uploads: S3 error {code}" in message and meaning in message
    assert WRONG_SECRET not in message and swift.secret_access_key not in message


def startup_settings(folder, endpoint, access_key_id, secret, bucket_name):
    """A worker's settings with stand-in weights (sparse files of the official sizes) and R2_* set."""
    folder.mkdir(exist_ok=True)
    for weight in weight_table.WEIGHTS:
        with open(folder / weight.name, "wb") as handle:
            handle.truncate(weight.size_bytes)
    return Settings.from_env(
        {
            "CHECKPOINTS_DIR": str(folder),
            "DEVICE": "cpu",
            "R2_ENDPOINT_URL": endpoint,
            "R2_ACCESS_KEY_ID": access_key_id,
            "R2_SECRET_ACCESS_KEY": secret,
            "R2_BUCKET_NAME": bucket_name,
        }
    )


def test_startup_names_a_wrong_key_a_missing_bucket_and_a_closed_port(swift, bucket, tmp_path):
    cases = {
        "wrong key": (swift.endpoint_url, swift.access_key_id, WRONG_SECRET, bucket, "SignatureDoesNotMatch"),
        "missing bucket": (
            swift.endpoint_url,
            swift.access_key_id,
            swift.secret_access_key,
            "no-such-bucket",
            "NoSuchBucket",
        ),
        "closed port": (
            f"http://127.0.0.1:{closed_port()}",
            swift.access_key_id,
            swift.secret_access_key,
            bucket,
            "cannot reach the storage endpoint",
        ),
    }
    for case, (endpoint, key_id, secret, bucket_name, expected) in cases.items():
        with pytest.raises(StartupError) as err:
            run_checks(startup_settings(tmp_path / "weights", endpoint, key_id, secret, bucket_name))
        line = str(err.value).splitlines()[1]
        sys.stderr.write(f"\n[start-up, {case}] {line}\n")
        assert line.startswith("R2 storage (R2_*): ") and expected in line, case
        assert secret not in str(err.value), case
    good = startup_settings(
        tmp_path / "weights", swift.endpoint_url, swift.access_key_id, swift.secret_access_key, bucket
    )
    assert run_checks(good).storage.startswith(f"bucket {bucket!r} at {swift.endpoint_url} takes uploads")


def test_the_worker_process_refuses_to_start_with_a_wrong_key(swift, bucket, tmp_path):
    env = {
        **os.environ,
        "CHECKPOINTS_DIR": str(tmp_path / "weights"),
        "DEVICE": "cpu",
        "R2_ENDPOINT_URL": swift.endpoint_url,
        "R2_ACCESS_KEY_ID": swift.access_key_id,
        "R2_SECRET_ACCESS_KEY": WRONG_SECRET,
        "R2_BUCKET_NAME": bucket,
    }
    startup_settings(tmp_path / "weights", "", "", "", "")  # the stand-in weights
    run = subprocess.run(
        [sys.executable, "handler.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1
    assert "S3 error SignatureDoesNotMatch (HTTP 403) (wrong secret access key" in run.stderr
    assert WRONG_SECRET not in run.stderr + run.stdout


def test_a_callers_wrong_key_fails_in_seconds_before_any_model_work(swift, bucket, job_handler):
    r2 = {
        "endpoint_url": swift.endpoint_url,
        "access_key_id": swift.access_key_id,
        "secret_access_key": WRONG_SECRET,
        "bucket_name": bucket,
    }
    started = time.monotonic()
    result = job_handler("swift-wrong-key", r2)
    elapsed = time.monotonic() - started
    sys.stderr.write(f"\n[job, wrong key] upload_failed after {elapsed:.2f} s: {result.get('error')}\n")
    assert result["error_type"] == "upload_failed" and job_handler.renders == []
    assert result["error"].startswith(
        f"upload_failed: bucket {bucket!r} does not take uploads: S3 error SignatureDoesNotMatch"
    )
    assert WRONG_SECRET not in repr(result)


class PutFailingProxy(BaseHTTPRequestHandler):
    """Forwards HEAD, GET and DELETE to Swift unchanged (the signature covers the Host header, kept as sent) and
    answers every PUT with 503 ServiceUnavailable: the destination check passes, the upload fails."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        self.server.seen.append(self.command)
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            upstream.putheader(name, value)
        upstream.endheaders()
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        upstream.close()

    do_HEAD = do_GET = do_DELETE = forward

    def do_PUT(self):
        self.server.seen.append("PUT")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        payload = b"<?xml version='1.0'?><Error><Code>ServiceUnavailable</Code><Message>m</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def put_failing_proxy(swift):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PutFailingProxy)
    httpd.daemon_threads = True
    httpd.upstream_port = int(swift.endpoint_url.rsplit(":", 1)[1])
    httpd.seen = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_an_upload_that_fails_after_the_check_passed_says_how_long_the_video_took(
    swift, bucket, put_failing_proxy, job_handler
):
    from sadtalker.worker.storage import MAX_ATTEMPTS

    endpoint = f"http://127.0.0.1:{put_failing_proxy.server_address[1]}"
    r2 = {
        "endpoint_url": endpoint,
        "access_key_id": swift.access_key_id,
        "secret_access_key": swift.secret_access_key,
        "bucket_name": bucket,
    }
    result = job_handler("swift-put-fails", r2)
    assert put_failing_proxy.seen == ["HEAD"] + ["PUT"] * MAX_ATTEMPTS  # the check passed on Swift's own answer
    assert len(job_handler.renders) == 1
    assert result["error_type"] == "upload_failed", result
    assert re.fullmatch(
        rf"upload_failed: upload to bucket '{bucket}' failed: S3 error ServiceUnavailable \(HTTP 503\) after "
        rf"{MAX_ATTEMPTS} attempt\(s\); check the R2 credentials, bucket name and endpoint "
        r"\(the video took \d+\.\d s to make and is not kept\)",
        result["error"],
    ), result["error"]
