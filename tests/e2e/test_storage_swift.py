"""Storage against a real S3 server: OpenStack Swift with s3api (Debian packages) on 127.0.0.1.

Swift checks SigV4 signatures and presigned-URL expiry the way R2 does, which a mock would not. The session
fixture ``swift`` runs ``tests/support/swift_server.sh start`` once (configs and rings in a pytest temp folder, free
ports), waits for ``/healthcheck``, and runs ``tests/support/swift_server.sh stop`` after the last test. Without the
Swift packages the tests fail (they are part of what ``make test`` installs), they are never skipped.
"""
import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.workerproc import fake_animate
import requests

from sadtalker.core.errors import UploadFailed
from sadtalker.worker.storage import StorageConfig, make_client, upload_video
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow  # a real S3 server: `make test-fast` leaves it out

SCRIPT = Path(__file__).resolve().parent / "swift_server.sh"
PROGRAMS = ("swift-proxy-server", "swift-object-server", "swift-container-server", "swift-account-server",
            "swift-ring-builder", "memcached")
START_TIMEOUT_S = 90
VIDEO = os.urandom(300_000)


@dataclass(frozen=True)
class Swift:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    started_in_s: float

    def config(self, bucket: str, **overrides) -> StorageConfig:
        values = dict(endpoint_url=self.endpoint_url, access_key_id=self.access_key_id,
                      secret_access_key=self.secret_access_key, bucket_name=bucket, max_attempts=2)
        values.update(overrides)
        return StorageConfig(**values)


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
    env = {**os.environ, "SWIFT_ROOT": str(root), "SWIFT_PORT": str(proxy), "SWIFT_MEMCACHE_PORT": str(memcache),
           "SWIFT_OBJECT_PORT": str(obj), "SWIFT_CONTAINER_PORT": str(container), "SWIFT_ACCOUNT_PORT": str(account),
           "SWIFT_ACCOUNT": "r2", "SWIFT_USER": "uploader", "SWIFT_SECRET": "swift-test-secret"}
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
    tampered = delivery.url[:signature_at] + flipped + delivery.url[signature_at + 1:]
    assert requests.get(tampered, timeout=30).status_code == 403


def test_the_object_is_not_readable_without_a_signature(swift, bucket, video_file):
    delivery = upload_video(str(video_file), swift.config(bucket), "job-anonymous")
    response = requests.get(f"{swift.endpoint_url}/{bucket}/{delivery.key}", timeout=30)
    assert response.status_code >= 400 and VIDEO not in response.content  # Swift answers 400 here, R2 403


def test_a_missing_bucket_is_upload_failed_with_its_code(swift, video_file):
    with pytest.raises(UploadFailed, match="NoSuchBucket"):
        upload_video(str(video_file), swift.config("no-such-bucket"), "job-missing-bucket")


def test_handler_uploads_to_storage_given_in_the_job(swift, bucket, monkeypatch, tmp_path_factory):
    import handler

    monkeypatch.setitem(sys.modules, "sadtalker.pipeline", types.SimpleNamespace(animate=fake_animate))
    monkeypatch.setattr(handler, "_BUNDLE", object())
    monkeypatch.setattr(handler, "_send_progress", lambda job, payload: None)
    monkeypatch.setenv("ALLOW_LOOPBACK_URLS", "true")  # the job's endpoint is this loopback Swift
    for name in ("R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    image = REPO_ROOT / "assets" / "astronaut.jpg"
    audio = REPO_ROOT / "assets" / "speech.wav"
    result = handler.handler({"id": "swift-job", "input": {
        "image_base64": base64.b64encode(image.read_bytes()).decode(),
        "audio_base64": base64.b64encode(audio.read_bytes()).decode(),
        "r2": {"endpoint_url": swift.endpoint_url, "access_key_id": swift.access_key_id,
               "secret_access_key": swift.secret_access_key, "bucket_name": bucket},
    }})
    assert result["success"] is True, result
    assert result["r2_key"] == "sadtalker/results/swift-job.mp4" and "video_base64" not in result
    video = requests.get(result["video_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert swift.secret_access_key not in repr(result)
