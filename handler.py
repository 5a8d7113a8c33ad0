"""RunPod entry point. ``handler(job)`` runs one job; ``python handler.py`` starts the worker.

Start-up, only under ``__main__``: read the settings, check that every weight file is present
(``sadtalker.worker.startup.check_or_exit``: it stops the worker with the list of missing files and the command
that fetches them), load the models once (``sadtalker.bundle.load_models``), then hand over to
``runpod.serverless.start``. With ``test_input.json`` in the working directory RunPod runs that one job and exits;
``--rp_serve_api`` serves the HTTP API on localhost.

A job: parse the input (``sadtalker.worker.options``), refuse a size the worker lacks, resolve storage (a caller's
``r2`` is checked before any work: ``sadtalker.worker.storage.check_destination``), download and decode the image
and the audio (``sadtalker.worker.media``), animate (``sadtalker.pipeline.animate``), upload or inline the video
(``sadtalker.worker.storage``), and turn the result into the response (:func:`_response`). Each job works in its own
temporary folder, removed in ``finally``. Every failure becomes ``{"success": false, "error", "error_type"}`` in
:func:`_error`.

Importing this module loads no model and imports neither torch nor runpod, so tests can call ``handler(job)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, AsyncIterator, Callable, Dict, Mapping, Optional

from sadtalker.core.contract import Animation, AnimationHooks, AnimationRequest, Segment
from sadtalker.core.errors import InternalError, UploadFailed, WorkerError, size_not_available
from sadtalker.core.jobtools import StageTimer
from sadtalker.worker.download import limits_from_settings
from sadtalker.worker.media import decode_image, decode_video, job_audio, source_bytes
from sadtalker.worker.options import JobOptions, parse_job_input
from sadtalker.worker.settings import Settings
from sadtalker.worker.startup import missing_size_hint, servable_sizes
from sadtalker.worker.storage import Delivery, StorageConfig, check_destination, deliver, resolve_storage

logger = logging.getLogger("handler")

# Set once by main() before the first job; a job never loads models.
_BUNDLE: Optional[Any] = None
_SETTINGS: Optional[Settings] = None

# Overall progress percent at the handler's own stages; the pipeline's 0-100 maps into the span between.
_PERCENT = {"download": 0.0, "decode": 5.0, "upload": 92.0, "done": 100.0}
_PIPELINE_SPAN = (10.0, 90.0)
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")

Progress = Callable[..., None]


def handler(
    job: Mapping[str, Any],
    stop: Optional[threading.Event] = None,
    emit: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """Run one RunPod job and return the success dict or the failure dict (never raises).

    ``stop``, once set, ends the job at its next batch (RunPod's cancel, see :func:`job_handler`). ``emit``, on a
    streaming worker (``STREAM_SEGMENT_SECONDS`` > 0), gets each segment's item as soon as it is delivered.
    """
    started = time.monotonic()
    try:
        return _run_job(job, started, stop, emit)
    except WorkerError as error:
        logger.warning("job failed: %s: %s", error.error_type, error.message)
        return _error(error)
    except Exception as error:  # the one place an unexpected failure becomes a response
        return _unexpected(error)


def _run_job(
    job: Mapping[str, Any],
    started: float,
    stop: Optional[threading.Event],
    emit: Optional[Callable[[Dict[str, Any]], None]],
) -> Dict[str, Any]:
    if not isinstance(job, Mapping):
        raise InternalError("the job is not an object")
    settings = _SETTINGS or Settings.from_env()
    options = parse_job_input(job.get("input"))
    _check_size(options.render.size, settings)
    storage = resolve_storage(options.r2, settings)
    if storage is not None and options.r2 is not None:  # the caller's destination: seconds now, not after a render
        check_destination(storage)
    job_id = _safe_job_id(job.get("id"))
    workdir = tempfile.mkdtemp(prefix=f"sadtalker-{job_id[:40]}-")
    try:
        return _process(job, options, storage, settings, job_id, workdir, started, stop, emit)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _process(
    job: Mapping[str, Any],
    options: JobOptions,
    storage: Optional[StorageConfig],
    settings: Settings,
    job_id: str,
    workdir: str,
    started: float,
    stop: Optional[threading.Event] = None,
    emit: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    timer = StageTimer()
    report = _progress_reporter(job)
    report("download")
    with timer.stage("download"):
        image_bytes = source_bytes(options.image, limits_from_settings(settings, settings.max_image_bytes))
        audio_bytes = (
            None
            if options.audio is None
            else source_bytes(options.audio, limits_from_settings(settings, settings.max_audio_bytes))
        )
        video_bytes = (
            None
            if options.ref_video is None
            else source_bytes(options.ref_video, limits_from_settings(settings, settings.max_image_bytes))
        )
    report("decode")
    with timer.stage("decode"):
        image_rgb = decode_image(image_bytes, settings.max_image_side)
        ref_frames = (
            None
            if video_bytes is None
            else decode_video(video_bytes, workdir, settings.max_ref_video_seconds, settings.max_image_side)
        )
        audio = job_audio(audio_bytes, video_bytes, options.render.idle_seconds, workdir, settings.max_audio_seconds)
    del image_bytes, audio_bytes, video_bytes
    request = AnimationRequest(
        image_rgb,
        audio.samples,
        options.render,
        options.seed,
        name=job_id,
        source_audio=audio.source,
        ref_frames=ref_frames,
    )
    pipeline = importlib.import_module("sadtalker.pipeline")  # torch and the models' code: on the first job only
    segments = _Segments(storage, job_id, settings.inline_result_max_bytes, emit) if emit is not None else None
    hooks = AnimationHooks(
        progress=_pipeline_progress(report),
        stop=stop,
        on_segment=None if segments is None else segments.deliver,
        segment_seconds=settings.stream_segment_seconds,
        first_segment_seconds=settings.stream_first_segment_seconds,
    )
    animation = pipeline.animate(_loaded_bundle(), settings, request, workdir, hooks)
    report("upload")
    made_in = time.monotonic() - started
    with timer.stage("upload"):
        already_inline = 0 if segments is None else segments.inline_bytes
        try:
            delivery = deliver(animation.path, storage, job_id, settings.inline_result_max_bytes, already_inline)
        except UploadFailed as error:
            raise UploadFailed(f"{error.message} (the video took {made_in:.1f} s to make and is not kept)") from None
    report("done")
    return _response(delivery, animation, timer, started)


class _Segments:
    """Delivers each streamed segment as it is encoded (R2 key ``<prefix><job id>.segment-NNN.mp4``, or inline within
    the job's inline budget) and emits its item."""

    def __init__(
        self,
        storage: Optional[StorageConfig],
        job_id: str,
        inline_max_bytes: int,
        emit: Callable[[Dict[str, Any]], None],
    ) -> None:
        self.storage, self.job_id, self.inline_max_bytes, self.emit = storage, job_id, inline_max_bytes, emit
        self.inline_bytes = 0  # bytes returned inline so far: the final video counts them too

    def deliver(self, segment: Segment) -> None:
        name = f"{self.job_id}.segment-{segment.index:03d}"
        delivery = deliver(segment.path, self.storage, name, self.inline_max_bytes, self.inline_bytes)
        if delivery.video_base64 is not None:
            self.inline_bytes += os.path.getsize(segment.path)
        os.remove(segment.path)  # delivered: only the whole video stays until the end of the job
        self.emit(
            {
                "segment": segment.index,
                "start_seconds": segment.start_seconds,
                "duration_seconds": segment.duration_seconds,
                "frames": segment.frames,
                **delivery.as_result(),
            }
        )


def _response(delivery: Delivery, animation: Animation, timer: StageTimer, started: float) -> Dict[str, Any]:
    """The success response: where the video is, what it is, and how long each stage took."""
    response = {
        "success": True,
        **delivery.as_result(),
        "duration_seconds": animation.duration_seconds,
        "chunks_processed": animation.chunks,
        "processing_time_seconds": round(time.monotonic() - started, 3),
        "width": animation.width,
        "height": animation.height,
        "fps": animation.fps,
        "frames": animation.frames,
        "seed": animation.seed,
        "timings": {**timer.rounded(), **animation.timings},
    }
    if animation.warnings:
        response["warnings"] = list(animation.warnings)
    return response


# Jobs run one at a time in this thread, so the SDK's event loop stays free (its /status, /cancel and heartbeats).
_JOB_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="job")


async def job_handler(job: Mapping[str, Any]) -> Dict[str, Any]:
    """RunPod's handler: :func:`handler` in the job thread. A cancel (RunPod's ``/cancel`` or stop signal cancels
    this task) sets the job's stop flag and waits for the thread, which stops within one batch and removes the job's
    folder, before the cancellation goes on: the next job starts on a clean worker."""
    stop = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(_JOB_THREAD, handler, job, stop)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await _stop_and_wait(stop, future)
        raise


async def stream_handler(job: Mapping[str, Any]) -> AsyncIterator[Dict[str, Any]]:
    """RunPod's handler on a streaming worker: yields each segment's item as it is delivered, then the whole result
    with ``"final": true`` (or the error item, which makes RunPod mark the job failed). Cancels as
    :func:`job_handler`."""
    loop = asyncio.get_running_loop()
    items: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
    stop = threading.Event()

    def emit(item: Dict[str, Any]) -> None:  # called in the job thread
        loop.call_soon_threadsafe(items.put_nowait, item)

    future = loop.run_in_executor(_JOB_THREAD, handler, job, stop, emit)
    try:
        while not (future.done() and items.empty()):
            getter = asyncio.ensure_future(items.get())
            await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        result = future.result()
        yield {**result, "final": True} if result.get("success") else result
    except (asyncio.CancelledError, GeneratorExit):
        await _stop_and_wait(stop, future)
        raise


async def _stop_and_wait(stop: threading.Event, future: "asyncio.Future") -> None:
    stop.set()
    await asyncio.wait({future})
    logger.info("job cancelled: its thread has stopped")


def _check_size(size: int, settings: Settings) -> None:
    """Refuse a render size this worker lacks before any work: the caller learns the sizes it has, the worker log
    keeps the operator's hint (which file is missing and the command that fetches it)."""
    sizes = servable_sizes(settings)
    if size not in sizes:
        logger.warning("a size-%d job was refused: %s", size, missing_size_hint(settings, size))
        raise size_not_available(size, sizes)


def _loaded_bundle() -> Any:
    if _BUNDLE is None:
        raise InternalError("the models are not loaded; start the worker with `python handler.py`")
    return _BUNDLE


def _safe_job_id(raw: Any) -> str:
    """The job id as a file- and key-safe string (RunPod ids already are); a fresh one when there is none."""
    cleaned = _SAFE_ID.sub("_", str(raw or ""))[:128].strip("._")
    return cleaned or uuid.uuid4().hex


def _progress_reporter(job: Mapping[str, Any]) -> Progress:
    """A function that sends ``{stage, chunk, chunks, percent}`` to RunPod for this job."""

    def report(stage: str, chunk: int = 0, chunks: int = 0, percent: Optional[float] = None) -> None:
        value = _PERCENT.get(stage, 0.0) if percent is None else percent
        payload = {"stage": stage, "chunk": chunk, "chunks": chunks, "percent": round(value, 1)}
        logger.info("progress %s", payload)
        if job.get("id") is not None:
            _send_progress(job, payload)

    return report


def _pipeline_progress(report: Progress) -> Progress:
    """The ``progress`` given to ``pipeline.animate``: ``(stage, chunk, chunks, percent)`` with the pipeline's
    own percent (0-100), reported as part of the job's overall percent."""
    low, high = _PIPELINE_SPAN

    def progress(stage: str, chunk: int = 0, chunks: int = 0, percent: float = 0.0) -> None:
        fraction = min(max(float(percent), 0.0), 100.0) / 100.0
        report(stage, chunk, chunks, low + fraction * (high - low))

    return progress


def _on_platform() -> bool:
    """True inside a RunPod worker: the SDK has an address to post progress to (none in local test or API mode)."""
    return bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))


def _send_progress(job: Mapping[str, Any], payload: Dict[str, Any]) -> None:
    if not _on_platform():  # the SDK would fail to post it and log an ERROR per update
        return
    import runpod  # at call time: importing the handler must stay cheap

    runpod.serverless.progress_update(dict(job), payload)


def _error(error: WorkerError, refresh_worker: bool = False) -> Dict[str, Any]:
    """The failure dict. The ``error`` key makes RunPod mark the job failed; RunPod then shows the caller only that
    text (``{"status": "FAILED", "error": ...}``), so it starts with the ``error_type`` code."""
    message = f"{error.error_type}: {error.message}"
    response: Dict[str, Any] = {"success": False, "error": message, "error_type": error.error_type}
    if refresh_worker:
        response["refresh_worker"] = True
    return response


def _unexpected(error: Exception) -> Dict[str, Any]:
    """An exception nobody planned for: the traceback goes to the log, a short message to the caller."""
    logger.exception("job failed with an unexpected error")
    if _is_cuda_out_of_memory(error):
        message = "the GPU ran out of memory; this worker restarts. Try size 256, enhancer none or shorter audio"
        return _error(InternalError(message), refresh_worker=True)
    return _error(InternalError(f"internal error ({type(error).__name__}); the worker log has the details"))


def _is_cuda_out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only loaded if a job got as far as the models
    out_of_memory = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if out_of_memory is not None and isinstance(error, out_of_memory):
        return True
    return isinstance(error, RuntimeError) and "CUDA out of memory" in str(error)


def main() -> int:
    """Start the worker: settings, start-up checks, models, then RunPod's job loop."""
    from sadtalker.worker.logs import configure_logging

    configure_logging()
    global _BUNDLE, _SETTINGS
    try:
        settings = Settings.from_env()
    except ValueError as error:
        logger.error("bad environment: %s", error)
        return 2
    from sadtalker.worker.startup import check_or_exit

    check_or_exit(settings)  # logs every missing weight file + the download command, exits 1
    from sadtalker.bundle import load_models

    _SETTINGS = settings
    _BUNDLE = load_models(settings)
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    """Hand over to RunPod's job loop (or its local test / API modes), the SDK logging at :func:`sdk_log_level`."""
    import runpod
    from runpod.serverless.modules.rp_logger import RunPodLogger

    from sadtalker.worker.startup import register_fitness_check

    RunPodLogger().set_level(sdk_log_level())  # --rp_log_level, read by start(), still overrides it
    register_fitness_check(settings)  # on the RunPod platform only: the same checks, GPU required
    if settings.stream_segment_seconds > 0:  # the SDK streams when the handler is a generator
        runpod.serverless.start({"handler": stream_handler, "return_aggregate_stream": True})
    else:
        runpod.serverless.start({"handler": job_handler})


def sdk_log_level(env: Mapping[str, str] = os.environ) -> str:
    """The SDK's log level: the operator's ``RUNPOD_LOG_LEVEL`` / ``RUNPOD_DEBUG_LEVEL``, else INFO. The SDK's own
    default, DEBUG, logs every handler output: presigned video URLs and inline videos."""
    return env.get("RUNPOD_LOG_LEVEL") or env.get("RUNPOD_DEBUG_LEVEL") or "INFO"


if __name__ == "__main__":
    sys.exit(main())
