"""The Floodgate client: submit a job, read it, cancel it, follow its events (Server-Sent Events
with resume) and run it to its end with a deadline. The standard library only (urllib, json).

Requests that are safe to send twice (reads, cancels, a submit with an idempotency key) are
retried on 429, 502, 503, 504 and network errors, with jittered backoff and ``Retry-After``
honoured; ``run`` gives its submit an idempotency key of its own so a retry never makes a twin.
The event stream resumes by itself after a dropped or stalled connection, sending
``Last-Event-ID``, and never yields an event twice (ids are ``<generation>.<sequence>``).
Input files (``client.files``, files.py) are uploaded in parts; a submit uploads a
``LocalFile`` input value first and sends its file id.
"""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import (
    FloodgateApiError,
    FloodgateNetworkError,
    FloodgateTimeoutError,
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    MalformedAnswerError,
)
from .files import Files, ProgressCallback, upload_input_files
from .sse import SseParser

#: Events that end a job's stream.
TERMINAL_EVENTS = ("succeeded", "failed", "cancelled", "expired")
#: Events this client knows; others (added later) are skipped.
KNOWN_EVENTS = ("status", "progress", "preview", "log") + TERMINAL_EVENTS
#: Statuses worth retrying when the request is safe to send twice.
RETRYABLE_STATUS = (429, 502, 503, 504)
#: The longest Retry-After the client waits out by itself (s).
MAX_RETRY_AFTER_S = 60.0
#: Default wait of run() and wait() (s): 15 minutes.
DEFAULT_WAIT_S = 15 * 60.0


@dataclass(frozen=True)
class Event:
    """One event of a job: ``event`` is its name, ``data`` its JSON payload."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


@dataclass(frozen=True)
class RunResult:
    """A succeeded job: its id and outputs (each with a signed ``url``)."""

    id: str
    outputs: list[dict[str, Any]] = field(default_factory=list)


class _Deadline(Exception):
    pass


def _seq(event_id: str) -> tuple[str, int] | None:
    gen, dot, seq = event_id.rpartition(".")
    return (gen, int(seq)) if dot and gen and seq.isdigit() else None


def _backoff_s(attempt: int, base_s: float = 0.25, max_s: float = 10.0) -> float:
    """Full jitter: a random delay up to base * 2^attempt, capped."""
    return random.uniform(0, min(max_s, base_s * (2**attempt)))


class Client:
    """A client of one edge with one API key.

    Example::

        fg = Client("http://127.0.0.1:8787", api_key)
        result = fg.run("demo", {"prompt": "a red fox"}, timeout_s=120)
        print(result.id, [o["url"] for o in result.outputs])
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        user_agent: str = "floodgate-python/0.1.0",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.user_agent = user_agent
        #: The account's input files: upload (in parts, resumable), get, list, delete.
        self.files = Files(self)

    # ---- HTTP ----

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        job_id: str | None = None,
    ) -> Any:
        """Opens one request with a JSON ``body`` or raw ``data``; an error answer becomes
        FloodgateApiError, a transport failure FloodgateNetworkError."""
        h = {"authorization": f"Bearer {self.api_key}", "user-agent": self.user_agent, "accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            h["content-type"] = "application/json"
        elif data is not None:
            h["content-type"] = "application/octet-stream"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            return urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s)  # noqa: S310 (http/https only)
        except urllib.error.HTTPError as err:
            raise self._api_error(err, job_id) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FloodgateNetworkError(f"{method} {path}: {reason}", job_id=job_id) from err

    @staticmethod
    def _api_error(err: urllib.error.HTTPError, job_id: str | None) -> FloodgateApiError:
        raw = err.read()
        retry_after = err.headers.get("retry-after")
        retry_after_s = float(retry_after) if retry_after and retry_after.isdigit() else None
        request_id = err.headers.get("x-request-id")
        try:
            payload = json.loads(raw)
            code, message = payload["error"]["code"], payload["error"]["message"]
            if not isinstance(code, str) or not isinstance(message, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            code, message = "unknown", raw[:200].decode("utf-8", "replace") or err.reason
        return FloodgateApiError(
            err.code, code, message, job_id=job_id, request_id=request_id, retry_after_s=retry_after_s
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool,
        job_id: str | None = None,
    ) -> Any:
        """Sends a request and answers its JSON; retries what is safe to retry."""
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                with self._open(method, path, body=body, data=data, headers=headers, job_id=job_id) as res:
                    raw = res.read()
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    raise MalformedAnswerError(f"{method} {path}: the answer is not JSON", job_id=job_id) from None
            except (FloodgateApiError, FloodgateNetworkError) as err:
                retryable = isinstance(err, FloodgateNetworkError) or err.status in RETRYABLE_STATUS
                if attempt + 1 >= attempts or not retryable:
                    raise
                wait = err.retry_after_s if isinstance(err, FloodgateApiError) and err.retry_after_s else 0.0
                if wait > MAX_RETRY_AFTER_S:
                    raise
                time.sleep(max(wait, _backoff_s(attempt)))
        raise AssertionError("unreachable")

    @staticmethod
    def _job_path(job_id: str, rest: str = "") -> str:
        return f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}{rest}"

    # ---- jobs ----

    def submit(
        self,
        model: str,
        input: dict[str, Any],
        *,
        metadata: dict[str, str | int | float | bool] | None = None,
        deadline: str | None = None,
        version: str | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        on_upload_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Submits a job; answers at once (202) with ``{id, status, model, tier, created_at}``.
        With an idempotency key, the same key and body within 24 h answer the same job.

        A top-level input value that is a ``LocalFile(path)`` is uploaded first (files.upload,
        progress to ``on_upload_progress``) and sent as its file id; every local file is checked
        before anything is sent."""
        body: dict[str, Any] = {"input": upload_input_files(self.files, input, on_upload_progress)}
        for key, value in (("metadata", metadata), ("deadline", deadline), ("version", version), ("webhook", webhook)):
            if value is not None:
                body[key] = value
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        answer = self._request(
            "POST",
            f"/v1/models/{urllib.parse.quote(model, safe='')}/jobs",
            body=body,
            headers=headers,
            idempotent=idempotency_key is not None,
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise MalformedAnswerError("the submit's answer has no job id")
        return answer

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as it is now (``GET /v1/jobs/{id}``)."""
        return self._request("GET", self._job_path(job_id), idempotent=True, job_id=job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancels the job (idempotent) and answers it as it now is."""
        return self._request("POST", self._job_path(job_id, "/cancel"), idempotent=True, job_id=job_id)

    def events(
        self,
        job_id: str,
        *,
        last_event_id: str | None = None,
        idle_timeout_s: float = 45.0,
        max_reconnects: int = 10,
        deadline: float | None = None,
    ) -> Iterator[Event]:
        """Follows the job's events to its end (the iterator stops after the terminal event).

        Resumes after a dropped or stalled connection (nothing for ``idle_timeout_s``; the edge
        sends a keep-alive every 15 s) with ``Last-Event-ID``, at most ``max_reconnects`` times in
        a row without an event. ``last_event_id`` resumes a stream followed before. ``deadline``
        (a ``time.monotonic()`` value) is for wait(); past it the iterator raises
        FloodgateTimeoutError.
        """
        path = self._job_path(job_id, "/events")
        resume = last_event_id
        gen, max_seq = None, -1
        seen = _seq(resume) if resume else None
        if seen:
            gen, max_seq = seen
        failures = 0
        retry_s: float | None = None
        last_error: Exception | None = None
        while True:
            if failures > max_reconnects:
                raise FloodgateNetworkError(
                    f"the event stream of {job_id} was lost {failures} times in a row; last: {last_error}",
                    job_id=job_id,
                )
            if failures:
                wait = max(retry_s or 0.0, _backoff_s(failures - 1))
                if isinstance(last_error, FloodgateApiError) and last_error.retry_after_s:
                    wait = max(wait, last_error.retry_after_s)
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                time.sleep(wait)
            timeout = idle_timeout_s
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Deadline()
                timeout = min(timeout, left)
            headers = {"accept": "text/event-stream", "cache-control": "no-store"}
            if resume:
                headers["last-event-id"] = resume
            try:
                res = self._open("GET", path, headers=headers, timeout_s=timeout, job_id=job_id)
            except FloodgateApiError as err:
                if err.status not in RETRYABLE_STATUS:
                    raise
                last_error, failures = err, failures + 1
                continue
            except FloodgateNetworkError as err:
                last_error, failures = err, failures + 1
                continue
            parser = SseParser()
            try:
                with res:
                    if not res.headers.get("content-type", "").startswith("text/event-stream"):
                        raise MalformedAnswerError(f"{path} answered {res.headers.get('content-type')!r}, not an event stream", job_id=job_id)
                    for line in res:
                        # Keep-alives arrive every 15 s: the deadline is checked on each line too.
                        if deadline is not None and time.monotonic() >= deadline:
                            raise _Deadline()
                        message = parser.feed(line)
                        if parser.retry_ms is not None:
                            retry_s = parser.retry_ms / 1000
                        if message is None or message.event not in KNOWN_EVENTS or message.id is None:
                            continue
                        try:
                            data = json.loads(message.data)
                        except ValueError:
                            raise MalformedAnswerError(f"{path}: the data of a {message.event} event is not JSON", job_id=job_id) from None
                        s = _seq(message.id)
                        reset = message.event == "status" and isinstance(data, dict) and data.get("reset") is True
                        if s is not None and not reset and s[0] == gen and s[1] <= max_seq:
                            continue  # already yielded before a reconnect
                        if s is not None and (reset or s[0] != gen or s[1] > max_seq):
                            gen, max_seq = s
                        resume = message.id
                        failures = 0
                        event = Event(id=message.id, event=message.event, data=data if isinstance(data, dict) else {})
                        yield event
                        if event.terminal:
                            return
            except (socket.timeout, TimeoutError, ConnectionError, OSError) as err:
                if deadline is not None and time.monotonic() >= deadline:
                    raise _Deadline() from None
                last_error = err
            # The stream ended (or stalled) before the job did: reconnect.
            failures += 1
            if last_error is None:
                last_error = FloodgateNetworkError("the stream closed before the job ended", job_id=job_id)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = DEFAULT_WAIT_S,
        on_event: Callable[[Event], None] | None = None,
        last_event_id: str | None = None,
    ) -> RunResult:
        """Follows the job to its end: its outputs on success, JobFailedError, JobCancelledError
        or JobExpiredError otherwise, FloodgateTimeoutError (the job goes on) past ``timeout_s``.
        Every error carries the job id."""
        deadline = time.monotonic() + timeout_s
        try:
            for event in self.events(job_id, deadline=deadline, last_event_id=last_event_id):
                if on_event is not None:
                    on_event(event)
                if event.event == "succeeded":
                    return RunResult(id=job_id, outputs=list(event.data.get("outputs", [])))
                if event.event == "failed":
                    error = event.data.get("error", {})
                    raise JobFailedError(job_id, str(error.get("code", "unknown")), str(error.get("message", "")))
                if event.event == "cancelled":
                    raise JobCancelledError(job_id)
                if event.event == "expired":
                    error = event.data.get("error", {})
                    raise JobExpiredError(job_id, str(error.get("code", "queue_ttl")), str(error.get("message", "")))
        except _Deadline:
            raise FloodgateTimeoutError(job_id, timeout_s) from None
        raise FloodgateNetworkError(f"the event stream of {job_id} ended without the job's end", job_id=job_id)

    def run(
        self,
        model: str,
        input: dict[str, Any],
        *,
        timeout_s: float = DEFAULT_WAIT_S,
        on_event: Callable[[Event], None] | None = None,
        on_submitted: Callable[[str], None] | None = None,
        idempotency_key: str | None = None,
        **submit_options: Any,
    ) -> RunResult:
        """Submits a job and waits for its end (see wait()). The submit carries an idempotency
        key (``idempotency_key`` or a fresh one), so retrying it never makes a second job;
        ``on_submitted`` gets the id before any waiting. ``LocalFile`` input values are uploaded
        first, as submit() does (``on_upload_progress`` among ``submit_options``)."""
        answer = self.submit(model, input, idempotency_key=idempotency_key or str(uuid.uuid4()), **submit_options)
        job_id = answer["id"]
        if on_submitted is not None:
            on_submitted(job_id)
        return self.wait(job_id, timeout_s=timeout_s, on_event=on_event)
