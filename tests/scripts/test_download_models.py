"""scripts/download_models.sh against a loopback HTTP server serving small stand-in files.

The stand-ins carry the real file names and --size membership from sadtalker/weights/table.py; their sizes and hashes
reach the script through WEIGHTS_MANIFEST, and WEIGHTS_BASE_URL points it at the server.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from sadtalker.weights import table as weights
from tests.support import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "download_models.sh"
NAME_256 = "SadTalker_V0.0.2_256.safetensors"
NAME_512 = "SadTalker_V0.0.2_512.safetensors"
ALL_NAMES = [w.name for w in weights.WEIGHTS]


class StandInServer:
    """Serves ``files`` on 127.0.0.1 with per-file misbehaviour, honouring ``Range: bytes=N-``.

    ``modes[name]``: "404"; "truncate" (announce the full length, send half, close); "corrupt" (right length,
    wrong bytes); "fail_once" (HTTP 503 on the first request, then the file).
    """

    def __init__(self, files: Dict[str, bytes]) -> None:
        self.files = files
        self.modes: Dict[str, str] = {}
        self.requests: List[tuple] = []  # (name, Range header or None)
        self.base_url_override: Optional[str] = None  # the URL the script is given instead of this server's
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/weights"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        name = req.path.rsplit("/", 1)[-1]
        range_header = req.headers.get("Range")
        self.requests.append((name, range_header))
        mode = self.modes.get(name, "")
        if name not in self.files or mode == "404":
            req.send_error(404)
            return
        if mode == "fail_once" and sum(1 for n, _ in self.requests if n == name) == 1:
            req.send_error(503)
            return
        body = self.files[name]
        if mode == "corrupt":
            body = bytes(b ^ 0xFF for b in body)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and int(match.group(1)) < len(body):
            start = int(match.group(1))
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            req.send_response(200)
        req.send_header("Content-Length", str(len(body) - start))
        req.end_headers()
        payload = body[start:]
        if mode == "truncate":
            payload = payload[: len(payload) // 2]
            req.close_connection = True
        req.wfile.write(payload)

    def names_requested(self) -> List[str]:
        return [name for name, _ in self.requests]


@pytest.fixture
def stand_ins() -> Dict[str, bytes]:
    """Distinct small contents per file name (a few kB, different lengths)."""
    return {name: (name.encode() * 400)[: 3000 + 137 * i] for i, name in enumerate(ALL_NAMES)}


@pytest.fixture
def server(stand_ins: Dict[str, bytes]):
    srv = StandInServer(stand_ins)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def manifest(tmp_path: Path, stand_ins: Dict[str, bytes]) -> Path:
    """The real table's names and sizes column, with the stand-ins' byte counts and hashes."""
    lines = []
    for w in weights.WEIGHTS:
        data = stand_ins[w.name]
        sizes = "both" if len(w.render_sizes) == 2 else w.render_sizes[0]
        lines.append(f"{w.name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\t{sizes}\thttp://unused.invalid/x")
    path = tmp_path / "manifest.tsv"
    path.write_text("# stand-ins\n" + "\n".join(lines) + "\n")
    return path


def run_script(
    manifest: Path, server: StandInServer, dest: Path, *args: str, progress: str = "auto"
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        CHECKPOINTS_DIR=str(dest),
        WEIGHTS_MANIFEST=str(manifest),
        WEIGHTS_BASE_URL=server.base_url_override or server.base_url,
        WEIGHTS_ATTEMPTS="2",
        WEIGHTS_RETRY_DELAY_S="0",
        WEIGHTS_CURL_RETRIES="0",
        WEIGHTS_PROGRESS=progress,
    )
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def failed_names(stderr: str) -> Optional[List[str]]:
    match = re.search(r"FAILED \d+ of \d+ file\(s\): (.*)", stderr)
    return match.group(1).split() if match else None


def test_checked_in_manifest_equals_the_python_table() -> None:
    assert (REPO_ROOT / "scripts" / "weights.tsv").read_text() == weights.to_tsv()


def test_size_all_fetches_every_file_verified_and_leaves_no_part(tmp_path, server, manifest, stand_ins) -> None:
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "all")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(ALL_NAMES)
    for name in ALL_NAMES:
        assert (dest / name).read_bytes() == stand_ins[name]


@pytest.mark.parametrize("size, absent", [("256", NAME_512), ("512", NAME_256)])
def test_size_selection_skips_the_other_renderer(tmp_path, server, manifest, size, absent) -> None:
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", size)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(n for n in ALL_NAMES if n != absent)
    assert absent not in server.names_requested()


def test_checksum_mismatch_fails_naming_the_file_and_keeps_nothing(tmp_path, server, manifest) -> None:
    server.modes["GFPGANv1.4.pth"] = "corrupt"
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 1
    assert failed_names(result.stderr) == ["GFPGANv1.4.pth"]
    assert "GFPGANv1.4.pth.part: sha256" in result.stderr
    assert not (dest / "GFPGANv1.4.pth").exists()
    assert not (dest / "GFPGANv1.4.pth.part").exists()
    assert (dest / "alignment_WFLW_4HG.pth").exists()  # the other files still arrive


def test_truncated_body_fails_naming_the_file(tmp_path, server, manifest) -> None:
    server.modes["detection_Resnet50_Final.pth"] = "truncate"
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 1
    assert failed_names(result.stderr) == ["detection_Resnet50_Final.pth"]
    assert not (dest / "detection_Resnet50_Final.pth").exists()


def test_404s_and_mismatches_are_all_named_in_one_run(tmp_path, server, manifest) -> None:
    server.modes[NAME_256] = "404"
    server.modes["mapping_00109-model.pth.tar"] = "404"
    server.modes["alignment_WFLW_4HG.pth"] = "corrupt"
    result = run_script(manifest, server, tmp_path / "ckpt", "--size", "all")
    assert result.returncode == 1
    assert sorted(failed_names(result.stderr) or []) == sorted(
        [NAME_256, "mapping_00109-model.pth.tar", "alignment_WFLW_4HG.pth"]
    )
    assert "404" in result.stderr


def test_rerun_resumes_a_partial_download_from_its_part_file(tmp_path, server, manifest, stand_ins) -> None:
    dest = tmp_path / "ckpt"
    dest.mkdir()
    data = stand_ins[NAME_256]
    (dest / (NAME_256 + ".part")).write_bytes(data[:1000])
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 0, result.stderr
    assert (dest / NAME_256).read_bytes() == data
    assert not (dest / (NAME_256 + ".part")).exists()
    assert (NAME_256, "bytes=1000-") in server.requests


def test_a_part_file_with_wrong_bytes_is_discarded_and_fetched_again(tmp_path, server, manifest, stand_ins) -> None:
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / (NAME_256 + ".part")).write_bytes(b"\0" * 1000)
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 0, result.stderr
    assert (dest / NAME_256).read_bytes() == stand_ins[NAME_256]
    assert server.requests.count((NAME_256, None)) == 1  # the fresh fetch after the bad resume


def test_rerun_after_a_truncated_download_completes_it(tmp_path, server, manifest, stand_ins) -> None:
    dest = tmp_path / "ckpt"
    server.modes["alignment_WFLW_4HG.pth"] = "truncate"
    first = run_script(manifest, server, dest, "--size", "256")
    assert first.returncode == 1
    assert (dest / "alignment_WFLW_4HG.pth.part").exists()
    del server.modes["alignment_WFLW_4HG.pth"]
    second = run_script(manifest, server, dest, "--size", "256")
    assert second.returncode == 0, second.stderr
    assert (dest / "alignment_WFLW_4HG.pth").read_bytes() == stand_ins["alignment_WFLW_4HG.pth"]


def test_verified_files_are_skipped_and_wrong_ones_replaced(tmp_path, server, manifest, stand_ins) -> None:
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "GFPGANv1.4.pth").write_bytes(stand_ins["GFPGANv1.4.pth"])
    (dest / "alignment_WFLW_4HG.pth").write_bytes(b"not the file")
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 0, result.stderr
    assert "GFPGANv1.4.pth" not in server.names_requested()
    assert "GFPGANv1.4.pth: already present and verified" in result.stderr
    assert (dest / "alignment_WFLW_4HG.pth").read_bytes() == stand_ins["alignment_WFLW_4HG.pth"]


def test_a_transient_server_error_is_retried(tmp_path, server, manifest, stand_ins) -> None:
    server.modes["mapping_00229-model.pth.tar"] = "fail_once"
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 0, result.stderr
    assert server.names_requested().count("mapping_00229-model.pth.tar") == 2
    assert (dest / "mapping_00229-model.pth.tar").read_bytes() == stand_ins["mapping_00229-model.pth.tar"]


def test_unknown_size_is_a_usage_error(tmp_path, server, manifest) -> None:
    result = run_script(manifest, server, tmp_path / "ckpt", "--size", "1024")
    assert result.returncode == 2
    assert "--size must be 256, 512 or all" in result.stderr
    assert server.requests == []


def closed_port_url() -> str:
    """A loopback URL on a port nothing listens on: every connection is refused, as with no network."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights"


def test_no_network_stops_at_once_with_one_message_naming_the_url_and_the_missing_files(
    tmp_path, server, manifest, stand_ins
) -> None:
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "GFPGANv1.4.pth").write_bytes(stand_ins["GFPGANv1.4.pth"])  # verified: not "missing"
    server.base_url_override = closed_port_url()
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 3, result.stderr
    messages = [line for line in result.stderr.splitlines() if line.startswith("download_models:")]
    messages = [line for line in messages if "manifest override" not in line and "already present" not in line]
    assert len(messages) == 1 and "cannot reach" in messages[0], result.stderr
    missing = [n for n in ALL_NAMES if n not in (NAME_512, "GFPGANv1.4.pth")]  # table order
    assert f"  {server.base_url_override}/{missing[0]}: curl: (7) Failed to connect" in result.stderr
    still = re.search(r"Still missing in (\S+): (\d+) file\(s\), [\d.]+ GB: (.*)", result.stderr)
    assert still and Path(still.group(1)) == dest.resolve()
    assert int(still.group(2)) == len(missing) and still.group(3).split() == missing
    assert "FAILED" not in result.stderr and "fetching" not in result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["GFPGANv1.4.pth"]  # nothing written, no .part
    empty = run_script(manifest, server, tmp_path / "new", "--size", "256")
    assert empty.returncode == 3 and not (tmp_path / "new").exists()  # no folder left behind either


def test_without_network_files_that_fail_their_checksums_are_named_apart_with_make_demo(
    tmp_path, server, manifest, stand_ins
) -> None:
    """Generated test weights in CHECKPOINTS_DIR are not "missing": the message says they are not the official
    files and how to run on them."""
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "GFPGANv1.4.pth").write_bytes(b"generated, not official" * 100)
    server.base_url_override = closed_port_url()
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 3, result.stderr
    assert "GFPGANv1.4.pth: present but not the official file (its size or SHA-256 differs)" in result.stderr
    still = re.search(r"Still missing in \S+: (\d+) file\(s\), [\d.]+ GB: (.*)", result.stderr)
    assert still is not None, result.stderr
    assert "GFPGANv1.4.pth" not in still.group(2).split()
    assert (
        "  Present but not the official files (size or SHA-256 differs, e.g. generated test weights): "
        "GFPGANv1.4.pth\n  To try the worker on generated weights without the official ones: make demo"
    ) in result.stderr


def test_the_progress_bar_is_drawn_when_asked_and_the_files_still_verify(tmp_path, server, manifest) -> None:
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "256", progress="bar")
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stderr and "###" in result.stderr
    quiet = run_script(manifest, server, tmp_path / "quiet", "--size", "256", progress="none")
    assert quiet.returncode == 0 and "100.0%" not in quiet.stderr


def test_a_rerun_with_everything_present_fetches_nothing(tmp_path, server, manifest) -> None:
    dest = tmp_path / "ckpt"
    assert run_script(manifest, server, dest, "--size", "256").returncode == 0
    before = len(server.requests)
    again = run_script(manifest, server, dest, "--size", "256")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == before and "fetching" not in again.stderr


# --- the optional RestoreFormer file --------------------------------------------------------------


def test_restoreformer_is_optional_unverified_and_named_like_the_table() -> None:
    text = SCRIPT.read_text()
    assert weights.RESTOREFORMER not in weights.WEIGHTS and weights.RESTOREFORMER.sha256 == ""
    assert f'RF_URL="{weights.RESTOREFORMER.urls[0]}"' in text
    assert weights.RESTOREFORMER_MD5 in text and f'RF_NAME="{weights.RESTOREFORMER.name}"' in text


def test_restoreformer_is_fetched_only_when_asked_and_checked_by_md5(
    tmp_path, server, manifest, stand_ins, monkeypatch
) -> None:
    body = b"restoreformer stand-in" * 100
    server.files["RestoreFormer.pth"] = body
    dest = tmp_path / "ckpt"
    result = run_script(manifest, server, dest, "--size", "256")
    assert result.returncode == 0 and not (dest / "RestoreFormer.pth").exists()
    monkeypatch.setenv("RESTOREFORMER_MD5", hashlib.md5(body).hexdigest())
    result = run_script(manifest, server, dest, "--size", "256", "--restoreformer")
    assert result.returncode == 0, result.stderr
    assert (dest / "RestoreFormer.pth").read_bytes() == body and "UNVERIFIED" in result.stderr
    monkeypatch.setenv("RESTOREFORMER_MD5", "0" * 32)
    (dest / "RestoreFormer.pth").unlink()
    result = run_script(manifest, server, dest, "--size", "256", "--restoreformer")
    assert result.returncode == 1 and not (dest / "RestoreFormer.pth").exists()
    assert "FAILED the optional RestoreFormer.pth" in result.stderr
