"""The Floodgate Python client: the standard library only (urllib, json).

Example::

    from floodgate_client import Client, FloodgateTimeoutError, JobFailedError

    fg = Client("http://127.0.0.1:8787", api_key)
    try:
        result = fg.run("demo", {"prompt": "a red fox"}, timeout_s=120)
        print([o["url"] for o in result.outputs])
    except FloodgateTimeoutError as err:
        print("still running; come back for", err.job_id)
    except JobFailedError as err:
        print(err.job_id, err.code)

An input file is a ``LocalFile`` value, uploaded before the submit::

    from floodgate_client import LocalFile

    result = fg.run("demo", {"prompt": "make it snow", "video": LocalFile("clip.mp4")})
    file = fg.files.upload("cat.png")  # or upload first; the job names file["id"]
"""

from .client import DEFAULT_WAIT_S, TERMINAL_EVENTS, Client, Event, RunResult
from .errors import (
    FloodgateApiError,
    FloodgateError,
    FloodgateNetworkError,
    FloodgateTimeoutError,
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    MalformedAnswerError,
)
from .files import Files, LocalFile, UploadProgress
from .sse import SseMessage, SseParser

__all__ = [
    "DEFAULT_WAIT_S",
    "TERMINAL_EVENTS",
    "Client",
    "Event",
    "FloodgateApiError",
    "FloodgateError",
    "FloodgateNetworkError",
    "FloodgateTimeoutError",
    "Files",
    "JobCancelledError",
    "JobExpiredError",
    "JobFailedError",
    "LocalFile",
    "MalformedAnswerError",
    "RunResult",
    "SseMessage",
    "SseParser",
    "UploadProgress",
]
