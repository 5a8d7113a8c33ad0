"""Checks run before the worker loads models or takes a job.

``run_checks(settings)`` verifies that every weight file the worker will load is present with its expected size,
that ffmpeg runs and has the encoders the video step uses, that the requested device exists, and, with the
operator's ``R2_*`` complete (and ``R2_CHECK_AT_STARTUP``), that the bucket takes uploads
(:func:`sadtalker.worker.storage.check_destination`: a wrong key, a missing bucket or an unreachable endpoint is
named, never the secret). It returns a :class:`StartupReport` (logged at start-up) or raises one
:class:`StartupError` listing every problem, with the command that fetches missing weights. ``check_or_exit`` is
the handler's entry point: it logs and exits non-zero.

:func:`servable_sizes` says which render sizes a job may ask for (the handler refuses the others before any work);
:func:`unofficial_weights` names the files that are not the official ones when ``CHECK_WEIGHT_SIZES=false``.

On RunPod the same checks are registered as a fitness check (``register_fitness_check``); the SDK runs it before
the first job and marks the worker unhealthy if it fails. There, a GPU is required unless DEVICE=cpu.

Sizes, not hashes, are checked here: the download script verifies SHA-256 once, and hashing 2.4 GB on every
cold start would cost seconds.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from sadtalker.core.errors import InvalidInput, UploadFailed
from sadtalker.output.ffmpeg import ffmpeg_exe
from sadtalker.weights import table as weights
from sadtalker.worker.settings import Settings

log = logging.getLogger(__name__)

DOWNLOAD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "download_models.sh"
# Encoders the video step needs (H.264 video, AAC audio).
REQUIRED_ENCODERS = ("libx264", "aac")
FFMPEG_TIMEOUT_S = 30
GIB = 1024**3
SADTALKER_512 = "SadTalker_V0.0.2_512.safetensors"


class StartupError(RuntimeError):
    """The worker cannot serve jobs; the message lists every problem and what to do."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class StartupReport:
    device: str  # e.g. "cuda:0 NVIDIA H100 80GB HBM3, 79.1 GiB" or "cpu"
    ffmpeg: str  # binary path and its version line
    checkpoints_dir: str  # absolute path
    weights: Tuple[str, ...]  # files found with their expected sizes
    notes: Tuple[str, ...] = ()  # conditions that do not stop the worker (e.g. the 512 renderer is absent)
    storage: str = "not checked"  # where results go, e.g. "bucket 'videos' at https://host takes uploads ..."

    def lines(self) -> List[str]:
        """Human-readable summary, one fact per line."""
        out = [
            f"device: {self.device}",
            f"ffmpeg: {self.ffmpeg}",
            f"weights: {len(self.weights)} files in {self.checkpoints_dir}",
            f"storage: {self.storage}",
        ]
        return out + [f"note: {note}" for note in self.notes]


def needed_weights(settings: Settings) -> Tuple[Tuple[weights.WeightFile, ...], Tuple[weights.WeightFile, ...]]:
    """(files required to start, files whose absence only disables a feature).

    The 512 renderer is required only with LOAD_512=startup; otherwise it is loaded on the first size-512 job.
    The FAN landmark file is read only by the retinaface face finder.
    """
    required, optional = [], []
    for weight in weights.WEIGHTS:
        if settings.face_detector != "retinaface" and weight.name in weights.RETINAFACE_ONLY:
            continue
        if "256" in weight.render_sizes or settings.load_512 == "startup":
            required.append(weight)
        else:
            optional.append(weight)
    return tuple(required), tuple(optional)


def download_command(checkpoints_dir: Path, size: str) -> str:
    """The shell command that fetches the files for ``size`` into ``checkpoints_dir``."""
    script = DOWNLOAD_SCRIPT if DOWNLOAD_SCRIPT.exists() else Path("scripts/download_models.sh")
    return f"CHECKPOINTS_DIR={shlex.quote(str(checkpoints_dir))} {shlex.quote(str(script))} --size {size}"


def _size_problem(folder: Path, weight: weights.WeightFile, exact: bool = True) -> Optional[str]:
    """None when ``folder/weight.name`` exists with the expected size, else a one-line description.

    ``exact=False`` (CHECK_WEIGHT_SIZES=false, for generated test weights) only requires a non-empty file.
    """
    path = folder / weight.name
    if not path.is_file():
        return f"{weight.name}: missing (expected {weight.size_bytes} bytes; {weight.purpose})"
    got = path.stat().st_size
    if got == 0 or (exact and got != weight.size_bytes):
        return f"{weight.name}: {got} bytes, expected {weight.size_bytes} (incomplete or a different file)"
    return None


def _check_weights(settings: Settings) -> Tuple[List[str], Tuple[str, ...], List[str]]:
    """(problems, names found, notes) for the weight files in CHECKPOINTS_DIR."""
    folder = Path(settings.checkpoints_dir).expanduser().resolve()
    required, optional = needed_weights(settings)
    exact = settings.check_weight_sizes
    status = {w.name: _size_problem(folder, w, exact) for w in required}
    bad = [problem for problem in status.values() if problem]
    found = tuple(name for name, problem in status.items() if problem is None)
    notes = [] if exact else [_unofficial_note(settings)]
    for weight in optional:
        if _size_problem(folder, weight, exact) is None:
            found += (weight.name,)
        else:
            notes.append(
                f"{weight.name} is absent or incomplete: size=512 jobs are refused (invalid_input) until it is "
                f"fetched with {download_command(folder, '512')}"
            )
    if not bad:
        return [], found, notes
    size = "all" if settings.load_512 == "startup" else "256"
    problems = [f"{len(bad)} weight file(s) missing or incomplete in {folder} (CHECKPOINTS_DIR):"]
    problems += [f"  - {line}" for line in bad]
    problems.append(f"Fetch them with: {download_command(folder, size)}")
    if exact and any("bytes, expected" in line for line in bad):
        problems.append(
            "Files of another size are not the official weights (generated test weights, for example): "
            "`make demo` runs the worker on those, with CHECK_WEIGHT_SIZES=false"
        )
    return problems, found, notes


def servable_sizes(settings: Settings) -> Tuple[int, ...]:
    """Render sizes a job may ask for: 256 (start-up requires its file), and 512 when it was loaded at start-up
    (LOAD_512=startup) or its file is in CHECKPOINTS_DIR for the lazy loader (a stat per job, so a file fetched
    later counts)."""
    if settings.load_512 == "startup":
        return (256, 512)
    folder = Path(settings.checkpoints_dir).expanduser()
    lazy = _size_problem(folder, weights.by_name(SADTALKER_512), settings.check_weight_sizes) is None
    return (256, 512) if lazy else (256,)


def missing_size_hint(settings: Settings, size: int) -> str:
    """The operator's side of a refused size, for the worker log (never the caller's error)."""
    folder = Path(settings.checkpoints_dir).expanduser().resolve()
    return (
        f"{SADTALKER_512} is absent or incomplete in {folder} (CHECKPOINTS_DIR); size={size} jobs are refused "
        f"until it is fetched with {download_command(folder, str(size))}"
    )


def unofficial_weights(settings: Settings) -> Tuple[str, ...]:
    """Weight files present in CHECKPOINTS_DIR whose size is not the official file's (only possible with
    CHECK_WEIGHT_SIZES=false, e.g. the generated test weights of ``make demo``). Same-size files are not hashed."""
    folder = Path(settings.checkpoints_dir).expanduser()
    required, optional = needed_weights(settings)
    found = [w for w in required + optional if (folder / w.name).is_file()]
    return tuple(w.name for w in found if (folder / w.name).stat().st_size != w.size_bytes)


def _unofficial_note(settings: Settings) -> str:
    differ = unofficial_weights(settings)
    if not differ:
        return "CHECK_WEIGHT_SIZES=false: weight files are checked for presence only"
    return (
        f"CHECK_WEIGHT_SIZES=false: {len(differ)} weight file(s) are not the official ones (their sizes differ): "
        f"{', '.join(differ)}; videos will not look like SadTalker's"
    )


def _check_storage(settings: Settings) -> Tuple[List[str], str, List[str]]:
    """(problems, description, notes) of the operator's R2 destination (R2_*)."""
    from sadtalker.worker.storage import check_destination, endpoint_host, resolve_storage

    given = [
        settings.r2_endpoint_url,
        settings.r2_access_key_id,
        settings.r2_secret_access_key,
        settings.r2_bucket_name,
    ]
    try:
        config = resolve_storage(None, settings)
    except InvalidInput as error:
        if all(given):
            return [f"R2 storage: {error.message}"], "misconfigured", []
        return (
            [],
            "R2_* partly set",
            [f"R2_* partly set ({error.message}): a job that does not send the rest in its r2 is refused"],
        )
    if config is None:
        return [], "no R2_*: results come back inline unless a job sends r2", []
    where = f"bucket {config.bucket_name!r} at {endpoint_host(config.endpoint_url)}"
    if not settings.r2_check_at_startup:
        return [], f"{where}, not checked (R2_CHECK_AT_STARTUP=false)", []
    start = time.monotonic()
    try:
        check_destination(config)
    except UploadFailed as error:
        return [f"R2 storage (R2_*): {error.message} (R2_CHECK_AT_STARTUP=false skips this check)"], where, []
    return [], f"{where} takes uploads (checked in {time.monotonic() - start:.2f} s)", []


def _check_ffmpeg() -> Tuple[List[str], str]:
    """(problems, "path: version line") after running ffmpeg and listing its encoders."""
    exe = ffmpeg_exe()
    try:
        version = subprocess.run(
            [exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=True
        )
        encoders = subprocess.run(
            [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        return [f"ffmpeg at {exe} does not run: {exc} {stderr.strip()[-500:]}".rstrip()], exe
    first_line = (version.stdout.splitlines() or ["(no version output)"])[0]
    names = {parts[1] for parts in (line.split() for line in encoders.stdout.splitlines()) if len(parts) > 1}
    missing = [enc for enc in REQUIRED_ENCODERS if enc not in names]
    problems = [f"ffmpeg at {exe} lacks encoder(s): {', '.join(missing)}"] if missing else []
    return problems, f"{exe}: {first_line}"


def _check_device(settings: Settings, require_cuda: bool) -> Tuple[List[str], str]:
    """(problems, description) of the device the models will run on."""
    import torch

    wants_cuda = settings.device == "cuda" or (require_cuda and settings.device == "auto")
    if settings.device == "cpu" or not torch.cuda.is_available():
        if wants_cuda:
            return [f"DEVICE={settings.device} but no CUDA device is usable (torch {torch.__version__})"], "cpu"
        return [], "cpu"
    props = torch.cuda.get_device_properties(0)
    return [], f"cuda:0 {props.name}, {props.total_memory / GIB:.1f} GiB"


def run_checks(settings: Settings, require_cuda: bool = False) -> StartupReport:
    """Check weights, ffmpeg, the device and the R2 destination; raise one StartupError listing every problem.

    ``require_cuda`` makes DEVICE=auto fail without a GPU (the RunPod fitness check sets it).
    """
    weight_problems, found, notes = _check_weights(settings)
    ffmpeg_problems, ffmpeg = _check_ffmpeg()
    device_problems, device = _check_device(settings, require_cuda)
    storage_problems, storage, storage_notes = _check_storage(settings)
    problems = weight_problems + ffmpeg_problems + device_problems + storage_problems
    if problems:
        raise StartupError(["The worker cannot start:"] + problems)
    folder = str(Path(settings.checkpoints_dir).expanduser().resolve())
    return StartupReport(
        device=device,
        ffmpeg=ffmpeg,
        checkpoints_dir=folder,
        weights=found,
        notes=tuple(notes + storage_notes),
        storage=storage,
    )


def check_or_exit(settings: Settings) -> StartupReport:
    """run_checks, logging the report; on failure log the message and raise SystemExit(1)."""
    try:
        report = run_checks(settings)
    except StartupError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    for line in report.lines():
        log.info("start-up check: %s", line)
    return report


def register_fitness_check(settings: Settings) -> Callable[[], None]:
    """Register the start-up checks with the RunPod SDK (runpod>=1.9) as a fitness check; returns the check.

    The SDK runs fitness checks only on the RunPod platform (not with test_input.json or --rp_serve_api), once,
    before the first job; a failure is logged, reported, and the worker exits with status 1.
    """
    import runpod

    require_cuda = settings.device != "cpu"

    def sadtalker_startup_checks() -> None:
        run_checks(settings, require_cuda=require_cuda)

    runpod.serverless.register_fitness_check(sadtalker_startup_checks)
    return sadtalker_startup_checks
