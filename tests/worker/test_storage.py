"""Storage without a real S3 server: which storage a job uses, the R2-safe client, retries, inline results.

A scripted stand-in for S3 on 127.0.0.1 records the requests boto3 sends and answers each PUT from a plan
(status codes, or a stall), which shows the headers, the retries and the error mapping. It checks no signature:
tests/e2e/test_storage_swift.py does that against a real server.
"""

import base64
import re
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sadtalker.core.errors import InvalidInput, UploadFailed
from sadtalker.worker.options import R2Credentials
from sadtalker.worker.settings import Settings
from sadtalker.worker.storage import (
    Delivery,
    StorageConfig,
    check_destination,
    deliver,
    inline_video,
    make_client,
    resolve_storage,
    upload_video,
)

ENV = {
    "R2_ENDPOINT_URL": "https://account.r2.cloudflarestorage.com",
    "R2_ACCESS_KEY_ID": "env-key",
    "R2_SECRET_ACCESS_KEY": "env-secret-value",
    "R2_BUCKET_NAME": "env-bucket",
}
VIDEO = b"\x00\x00\x00\x18ftypmp42 pretend video bytes " * 50


class FakeS3(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.server.requests.append({"method": "HEAD", "path": self.path})
        self.send_response(self.server.head_status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.server.requests.append({"method": "DELETE", "path": self.path})
        self.send_response(204)
        self.end_headers()

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.requests.append({"method": "PUT", "path": self.path, "headers": dict(self.headers), "body": body})
        action = server.plan.pop(0) if server.plan else 200
        if action == "stall":
            time.sleep(2)
            return
        if action == 200:
            self.send_response(200)
            self.send_header("ETag", '"abc"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        code = {403: "AccessDenied", 404: "NoSuchBucket", 500: "InternalError", 503: "ServiceUnavailable"}[action]
        payload = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>".encode()
        self.send_response(action)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def fake_s3():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
    httpd.daemon_threads = True
    httpd.requests, httpd.plan, httpd.head_status = [], [], 200
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def config_for(httpd, **overrides):
    values = dict(
        endpoint_url=f"http://127.0.0.1:{httpd.server_address[1]}",
        access_key_id="AKTEST",
        secret_access_key="the-secret-value",
        bucket_name="videos",
        max_attempts=3,
        read_timeout_s=5,
    )
    values.update(overrides)
    return StorageConfig(**values)


@pytest.fixture
def video_file(tmp_path):
    path = tmp_path / "result.mp4"
    path.write_bytes(VIDEO)
    return path


class TestWhichStorage:
    def test_nothing_configured_means_inline(self):
        assert resolve_storage(None, Settings.from_env({})) is None

    def test_environment_alone_configures_storage(self):
        config = resolve_storage(None, Settings.from_env(ENV))
        assert (config.endpoint_url, config.access_key_id, config.bucket_name) == (
            ENV["R2_ENDPOINT_URL"],
            "env-key",
            "env-bucket",
        )
        assert (config.key_prefix, config.presign_expires_s) == ("sadtalker/results/", 3600)

    def test_job_fields_override_the_environment_one_by_one(self):
        config = resolve_storage(R2Credentials(bucket_name="job-bucket"), Settings.from_env(ENV))
        assert config.bucket_name == "job-bucket" and config.access_key_id == "env-key"

    def test_prefix_and_lifetime_come_from_settings(self):
        settings = Settings.from_env({**ENV, "R2_KEY_PREFIX": "out/", "R2_PRESIGN_EXPIRES_S": "60"})
        config = resolve_storage(None, settings)
        assert (config.key_prefix, config.presign_expires_s) == ("out/", 60)

    def test_half_configured_storage_names_what_is_missing(self):
        with pytest.raises(InvalidInput) as caught:
            resolve_storage(R2Credentials(bucket_name="b", access_key_id="k"), Settings.from_env({}))
        message = caught.value.message
        assert "r2.endpoint_url or R2_ENDPOINT_URL" in message
        assert "r2.secret_access_key or R2_SECRET_ACCESS_KEY" in message
        assert "bucket_name" not in message

    @pytest.mark.parametrize("endpoint", ["http://169.254.169.254", "http://10.0.0.8:9000", "http://[::1]:9000"])
    def test_a_job_endpoint_on_a_private_address_is_refused(self, endpoint):
        with pytest.raises(InvalidInput, match="r2.endpoint_url is not allowed"):
            resolve_storage(R2Credentials(endpoint_url=endpoint), Settings.from_env(ENV))

    def test_the_operators_endpoint_is_trusted(self):
        config = resolve_storage(None, Settings.from_env({**ENV, "R2_ENDPOINT_URL": "http://10.0.0.8:9000"}))
        assert config.endpoint_url == "http://10.0.0.8:9000"

    def test_secret_and_url_stay_out_of_reprs(self):
        config = resolve_storage(None, Settings.from_env(ENV))
        delivery = Delivery(url="https://x/y?X-Amz-Signature=sig", key="k")
        assert "env-secret-value" not in repr(config) and "X-Amz-Signature" not in repr(delivery)


class TestClient:
    def test_client_uses_the_r2_safe_configuration(self, fake_s3):
        client = make_client(config_for(fake_s3))
        config = client.meta.config
        assert client.meta.region_name == "auto"
        assert config.signature_version == "s3v4"
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
        assert config.s3["addressing_style"] == "path"
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}

    def test_upload_sends_a_sigv4_put_for_region_auto_without_checksum_headers(self, fake_s3, video_file):
        delivery = upload_video(str(video_file), config_for(fake_s3), "job-1")
        (request,) = fake_s3.requests
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert request["path"] == "/videos/sadtalker/results/job-1.mp4"
        assert request["body"] == VIDEO
        assert headers["content-type"] == "video/mp4"
        assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKTEST/")
        assert "/auto/s3/aws4_request" in headers["authorization"]
        assert not [name for name in headers if name.startswith("x-amz-checksum") or "sdk-checksum" in name]
        assert delivery.key == "sadtalker/results/job-1.mp4"
        assert "/videos/sadtalker/results/job-1.mp4?" in delivery.url and "X-Amz-Expires=3600" in delivery.url
        assert delivery.as_result() == {
            "video_url": delivery.url,
            "expires_at": delivery.expires_at,
            "r2_key": "sadtalker/results/job-1.mp4",
        }
        signed_at = datetime.strptime(re.search(r"X-Amz-Date=(\w+)", delivery.url).group(1), "%Y%m%dT%H%M%SZ")
        expires_at = datetime.strptime(delivery.expires_at, "%Y-%m-%dT%H:%M:%SZ")  # ISO 8601, UTC
        assert timedelta(0) <= signed_at + timedelta(seconds=3600) - expires_at <= timedelta(seconds=60)


class TestRetriesAndErrors:
    def test_5xx_answers_are_retried_until_one_succeeds(self, fake_s3, video_file):
        fake_s3.plan[:] = [503, 500, 200]
        upload_video(str(video_file), config_for(fake_s3), "job-2")
        assert len(fake_s3.requests) == 3
        assert all(request["body"] == VIDEO for request in fake_s3.requests)

    def test_persistent_5xx_is_upload_failed_naming_bucket_and_code(self, fake_s3, video_file):
        fake_s3.plan[:] = [500, 500, 500]
        with pytest.raises(UploadFailed) as caught:
            upload_video(str(video_file), config_for(fake_s3), "job-3")
        message = caught.value.message
        assert "'videos'" in message and "InternalError" in message and "HTTP 500" in message
        assert "the-secret-value" not in message
        assert len(fake_s3.requests) == 3

    def test_access_denied_is_not_retried(self, fake_s3, video_file):
        fake_s3.plan[:] = [403]
        with pytest.raises(UploadFailed, match="AccessDenied"):
            upload_video(str(video_file), config_for(fake_s3), "job-4")
        assert len(fake_s3.requests) == 1

    def test_a_read_timeout_is_retried_then_reported(self, fake_s3, video_file):
        fake_s3.plan[:] = ["stall", "stall"]
        with pytest.raises(UploadFailed, match="ReadTimeoutError"):
            upload_video(str(video_file), config_for(fake_s3, read_timeout_s=0.3, max_attempts=2), "job-5")
        assert len(fake_s3.requests) == 2

    def test_a_stall_then_success_uploads(self, fake_s3, video_file):
        fake_s3.plan[:] = ["stall", 200]
        delivery = upload_video(str(video_file), config_for(fake_s3, read_timeout_s=0.3), "job-6")
        assert delivery.key.endswith("job-6.mp4") and len(fake_s3.requests) == 2

    def test_an_unreachable_endpoint_is_upload_failed(self, video_file):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = StorageConfig(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key_id="a",
            secret_access_key="s",
            bucket_name="b",
            max_attempts=1,
        )
        with pytest.raises(UploadFailed, match="EndpointConnectionError talking to http://127.0.0.1"):
            upload_video(str(video_file), config, "job-7")


class TestDeadline:
    """No new attempt starts once the upload's total time is spent; the clock is the test's, so nothing waits."""

    def test_no_retry_starts_after_the_total_time(self, fake_s3, video_file):
        fake_s3.plan[:] = [503] * 10
        readings = iter([0.0] + [500.0] * 10)  # the upload starts, then every later reading is past the limit
        config = config_for(fake_s3, max_attempts=10, total_timeout_s=120)
        with pytest.raises(UploadFailed) as caught:
            upload_video(str(video_file), config, "job-deadline", clock=lambda: next(readings))
        assert len(fake_s3.requests) == 1
        assert caught.value.message == (
            "upload to bucket 'videos' failed: S3 error ServiceUnavailable (HTTP 503); "
            "gave up after 1 attempt(s) in 500.0 s (the limit is 120 s)"
        )

    def test_within_the_total_time_the_attempts_are_botocores(self, fake_s3, video_file):
        fake_s3.plan[:] = [503, 503, 503]
        with pytest.raises(UploadFailed, match=r"ServiceUnavailable \(HTTP 503\) after 3 attempt\(s\)"):
            upload_video(str(video_file), config_for(fake_s3, max_attempts=3), "job-in-time", clock=lambda: 0.0)
        assert len(fake_s3.requests) == 3


class TestCheckDestination:
    """The check before any work, against the scripted server (the real one: tests/test_storage_swift.py)."""

    def test_a_bucket_that_answers_head_passes_with_one_request(self, fake_s3):
        check_destination(config_for(fake_s3))
        assert [(r["method"], r["path"]) for r in fake_s3.requests] == [("HEAD", "/videos")]

    def test_where_head_is_refused_a_put_and_delete_under_the_prefix_decide(self, fake_s3):
        fake_s3.head_status = 403
        check_destination(config_for(fake_s3))
        methods = [r["method"] for r in fake_s3.requests]
        assert methods == ["HEAD", "PUT", "DELETE"]
        put, delete = fake_s3.requests[1], fake_s3.requests[2]
        assert put["path"].startswith("/videos/sadtalker/results/.write-check-") and put["body"] == b""
        assert delete["path"] == put["path"]

    @pytest.mark.parametrize(
        "status, code, meaning",
        [
            (403, "AccessDenied", "the key may not write to this bucket"),
            (404, "NoSuchBucket", "the bucket does not exist"),
        ],
    )
    def test_a_refused_put_names_the_s3_code_and_what_it_means(self, fake_s3, status, code, meaning):
        fake_s3.head_status = status
        fake_s3.plan[:] = [status]
        with pytest.raises(UploadFailed) as caught:
            check_destination(config_for(fake_s3))
        assert caught.value.message == (
            f"bucket 'videos' does not take uploads: S3 error {code} (HTTP {status}) "
            f"({meaning}); check the R2 credentials, bucket name and endpoint"
        )
        assert "the-secret-value" not in caught.value.message
        assert [r["method"] for r in fake_s3.requests] == ["HEAD", "PUT"]


class TestInline:
    def test_small_video_comes_back_as_base64(self, video_file):
        delivery = inline_video(str(video_file), max_bytes=len(VIDEO))
        assert base64.b64decode(delivery.video_base64) == VIDEO
        assert delivery.as_result() == {"video_base64": delivery.video_base64}

    def test_video_over_the_cap_says_to_configure_r2(self, video_file):
        with pytest.raises(UploadFailed) as caught:
            inline_video(str(video_file), max_bytes=len(VIDEO) - 1)
        assert "INLINE_RESULT_MAX_BYTES" in caught.value.message and "configure R2" in caught.value.message

    def test_deliver_without_storage_is_inline(self, video_file):
        assert deliver(str(video_file), None, "job", 10**6).video_base64 is not None

    def test_deliver_with_storage_uploads(self, fake_s3, video_file):
        delivery = deliver(str(video_file), config_for(fake_s3), "job-8", 1)
        assert delivery.key == "sadtalker/results/job-8.mp4" and delivery.video_base64 is None
