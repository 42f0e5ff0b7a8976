"""The errors of the Floodgate Python client: every one a FloodgateError.

API answers carry the API's error code (shared/errors.ts) and, for calls about a job, the job's
id; errors about a job's end (failed, cancelled, expired, the deadline passed) always carry it,
so a caller can come back for the job later.
"""

from __future__ import annotations


class FloodgateError(Exception):
    """Anything the client raises."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id


class FloodgateApiError(FloodgateError):
    """The API answered with an error: ``status``, ``code`` (stable), ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        job_id: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}", job_id=job_id)
        self.status = status
        self.code = code
        self.api_message = message
        self.request_id = request_id
        self.retry_after_s = retry_after_s


class FloodgateNetworkError(FloodgateError):
    """The edge could not be reached, or the connection broke, after the retries."""


class MalformedAnswerError(FloodgateError):
    """The edge answered something that is not what the API promises."""


class JobFailedError(FloodgateError):
    """The job failed: ``code`` says why (``oom``, ``model_error``, ``worker_lost``, ...)."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} failed ({code}): {message}", job_id=job_id)
        self.code = code


class JobCancelledError(FloodgateError):
    """The job was cancelled."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled", job_id=job_id)
        self.code = "cancelled"


class JobExpiredError(FloodgateError):
    """The job waited past its model's queue TTL."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(f"job {job_id} expired ({code}): {message}", job_id=job_id)
        self.code = code


class FloodgateTimeoutError(FloodgateError):
    """A wait's deadline passed before the job ended; the job goes on (``job_id`` to come back)."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        super().__init__(
            f"job {job_id} did not end within {timeout_s:g} s; it goes on: follow it again with its id",
            job_id=job_id,
        )
        self.code = "timeout"
        self.timeout_s = timeout_s
