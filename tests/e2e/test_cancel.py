"""RunPod's cancel stops a job within one batch (counted in batches, never in seconds), through the SDK's own job
runner: its JobScaler takes the jobs, runs the real handler (``handler.job_handler``) on the real pipeline (small
networks), and cancels the job's task when its stop channel names the job (the code path of ``/cancel`` and of a
timeout on the platform). Only the network is replaced: the job source, the stop channel and the result post are
in-process stand-ins."""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import tempfile
import time

import numpy as np
import pytest

import handler
from tests.support.smallbundle import astronaut_base64, wav_base64

# A worker loop running whole jobs: `make test-fast` leaves it out.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.slow]


def job(job_id: str, seconds: float) -> dict:
    return {
        "id": job_id,
        "input": {
            "image_base64": astronaut_base64(),
            "audio_base64": wav_base64(seconds),
            "enhancer": "none",
            "seed": 1,
        },
    }


def job_folders(job_id: str) -> list:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"sadtalker-{job_id}-*"))


def test_a_cancelled_job_stops_within_one_batch_and_the_next_one_succeeds(bundle, settings, monkeypatch):
    from runpod.serverless.modules import rp_job
    from runpod.serverless.modules.rp_logger import RunPodLogger
    from runpod.serverless.modules.rp_scale import JobScaler

    sdk_log = RunPodLogger()
    monkeypatch.setattr(sdk_log, "level", sdk_log.level)  # restored after the test
    sdk_log.set_level("WARN")  # the SDK's DEBUG default would print every output
    monkeypatch.setattr(handler, "_BUNDLE", bundle)
    monkeypatch.setattr(handler, "_SETTINGS", dataclasses.replace(settings, render_batch_size=2))
    batches = []  # when each rendered batch was reported
    monkeypatch.setattr(
        handler,
        "_send_progress",
        lambda job, payload: batches.append(time.monotonic()) if payload["stage"] == "render" else None,
    )
    results = {}

    async def record_result(session, job_data, job, is_stream=False):
        results[job["id"]] = (job_data, time.monotonic())

    monkeypatch.setattr(rp_job, "send_result", record_result)
    queue = [[job("cancel-me", 20.0)]]  # 500 frames: minutes of work unless it stops
    stopped = {}

    async def take_jobs(session, count):
        await asyncio.sleep(0.2)
        if queue and (not results or "cancel-me" in stopped):
            return queue.pop(0)
        return None

    async def stop_signals(session):
        await asyncio.sleep(0.1)
        if "cancel-me" not in stopped and len(batches) >= 3:  # mid-render
            stopped["cancel-me"] = time.monotonic()
            queue.append([job("next-one", 0.6)])
            return ["cancel-me"]
        return []

    scaler = JobScaler(
        {
            "handler": handler.job_handler,
            "jobs_fetcher": take_jobs,
            "stop_signals_fetcher": stop_signals,
            "jobs_fetcher_timeout": 5,
            "stop_signals_fetcher_timeout": 5,
        }
    )
    original_stop = scaler.stop_job

    async def stop_job(job_id):
        stopped_task = scaler.jobs_tasks.get(job_id)
        found = await original_stop(job_id)
        if stopped_task is not None:
            try:
                await stopped_task  # the task ends once the job's thread has stopped (handler.job_handler)
            except asyncio.CancelledError:
                stopped["ended"] = time.monotonic()
        return found

    scaler.stop_job = stop_job
    original_stop_and_wait = handler._stop_and_wait

    async def stop_and_wait(stop, future):
        stopped["flag"] = time.monotonic()  # the task got the cancel: the job's stop flag is set now
        await original_stop_and_wait(stop, future)

    monkeypatch.setattr(handler, "_stop_and_wait", stop_and_wait)

    async def run() -> None:
        worker = asyncio.create_task(scaler.run())
        deadline = time.monotonic() + 240
        while "next-one" not in results and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        scaler.kill_worker()
        await asyncio.wait_for(worker, timeout=30)

    asyncio.run(run())
    assert "cancel-me" not in results, "a cancelled job posted a result"
    batch_s = float(np.median(np.diff(batches[:3])))
    flag_s, stop_s = stopped["flag"] - stopped["cancel-me"], stopped["ended"] - stopped["flag"]
    print(
        f"one batch: {batch_s:.3f} s; stop flag set {flag_s:.3f} s after the stop signal; "
        f"the job's thread ended {stop_s:.3f} s after the flag"
    )
    rendered_after = [t for t in batches if stopped["flag"] < t <= stopped["ended"]]
    # Counted in batches, not seconds: the batch that was rendering when the flag was set may finish, no other.
    assert len(rendered_after) <= 1, f"{len(rendered_after)} batches were rendered after the stop flag"
    assert len(batches) < 250, "the cancelled job rendered to the end"
    assert job_folders("cancel-me") == []
    assert results["next-one"][0]["output"]["success"] is True
    assert job_folders("next-one") == []
