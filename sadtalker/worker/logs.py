"""Process-wide logging set-up for the worker, called once at start-up (never at import).

One stream handler on stderr with timestamp, level and logger name. The HTTP and AWS client libraries are kept
at WARNING: at DEBUG they print request URLs and headers, which for S3 include signatures and presigned query
strings. Warnings are not silenced.
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr at ``level``; keep the client libraries that would log secrets at WARNING."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
