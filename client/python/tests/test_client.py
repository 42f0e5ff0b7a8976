"""The Python client against a local stand-in of the edge's HTTP answers (a thread serving on
127.0.0.1): what it sends, how it retries, how its event stream resumes, and how a wait ends.
The real edge is tested by e2e_stack.py, run from test/e2e/python-client.test.ts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from floodgate_client import (
    Client,
    FloodgateApiError,
    FloodgateError,
    FloodgateTimeoutError,
    JobCancelledError,
    JobFailedError,
    LocalFile,
    SseParser,
    UploadProgress,
)

Handler = Callable[[BaseHTTPRequestHandler], None]


class Stub:
    """An HTTP server on 127.0.0.1 whose answers the test scripts, recording each request."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests: list[dict] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                self.body = body
                stub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                route = stub.routes.get(f"{self.command} {self.path}")
                if route is None:
                    send_json(self, 404, {"error": {"code": "not_found", "message": "no such route"}})
                else:
                    route(self)

            do_GET = handle_one
            do_POST = handle_one
            do_PUT = handle_one
            do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        # Polled often, so that shutdown() returns at once rather than half a second later.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_json(h: BaseHTTPRequestHandler, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(raw)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(raw)


def sse(h: BaseHTTPRequestHandler, events: list[tuple[str, str, dict]], *, hold_s: float = 0.0) -> None:
    """Answers an event stream with `events` (id, name, data), then holds or closes it."""
    h.send_response(200)
    h.send_header("content-type", "text/event-stream")
    h.send_header("connection", "close")
    h.end_headers()
    for event_id, name, data in events:
        h.wfile.write(f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode())
        h.wfile.flush()
    end = time.monotonic() + hold_s
    try:
        while time.monotonic() < end:
            h.wfile.write(b": keep-alive\n\n")
            h.wfile.flush()
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away: what a deadline does
    h.close_connection = True


STATUS = {"status": "running", "phase": "sampling", "queue": None, "attempt": 1}


class SseParserTest(unittest.TestCase):
    def test_multi_line_data_comments_ids_and_retry_are_parsed_as_the_standard_says(self) -> None:
        p = SseParser()
        lines = [": keep-alive", "retry: 1500", "id: 1.1", "event: log", "data: a", "data: b\r\n", ""]
        out = [m for m in (p.feed(line) for line in lines) if m is not None]
        self.assertEqual(len(out), 1)
        self.assertEqual((out[0].id, out[0].event, out[0].data), ("1.1", "log", "a\nb"))
        self.assertEqual(p.retry_ms, 1500)
        # The id persists to the next event; an event without data is not dispatched.
        self.assertIsNone(p.feed("event: nothing"))
        self.assertIsNone(p.feed(""))
        p.feed("data: x")
        self.assertEqual(p.feed("").id, "1.1")


class ClientTest(unittest.TestCase):
    def stub(self, routes: dict[str, Handler]) -> Stub:
        s = Stub(routes)
        self.addCleanup(s.close)
        return s

    def test_submit_sends_the_input_and_the_idempotency_key_and_answers_the_job(self) -> None:
        s = self.stub({"POST /v1/models/demo/jobs": lambda h: send_json(h, 202, {"id": "job_1", "status": "queued"})})
        answer = Client(s.url, "fgk_key").submit("demo", {"prompt": "fox"}, metadata={"user": "u1"}, idempotency_key="k1")
        self.assertEqual(answer["id"], "job_1")
        req = s.requests[0]
        self.assertEqual(json.loads(req["body"]), {"input": {"prompt": "fox"}, "metadata": {"user": "u1"}})
        self.assertEqual(req["headers"]["idempotency-key"], "k1")
        self.assertEqual(req["headers"]["authorization"], "Bearer fgk_key")

    def test_an_api_error_carries_its_status_code_message_and_the_job_id(self) -> None:
        s = self.stub(
            {
                "GET /v1/jobs/job_x": lambda h: send_json(
                    h, 404, {"error": {"code": "job_not_found", "message": "no job job_x"}}, {"x-request-id": "r1"}
                )
            }
        )
        with self.assertRaises(FloodgateApiError) as caught:
            Client(s.url, "k").get("job_x")
        err = caught.exception
        self.assertEqual((err.status, err.code, err.job_id, err.request_id), (404, "job_not_found", "job_x", "r1"))

    def test_a_read_is_retried_on_503_honouring_retry_after_but_a_submit_without_a_key_is_not(self) -> None:
        calls = {"n": 0}

        def flaky(h: BaseHTTPRequestHandler) -> None:
            calls["n"] += 1
            if calls["n"] < 3:
                send_json(h, 503, {"error": {"code": "unavailable", "message": "busy"}}, {"retry-after": "0"})
            else:
                send_json(h, 200, {"id": "job_1", "status": "queued"})

        s = self.stub(
            {
                "GET /v1/jobs/job_1": flaky,
                "POST /v1/models/demo/jobs": lambda h: send_json(
                    h, 503, {"error": {"code": "unavailable", "message": "busy"}}, {"retry-after": "0"}
                ),
            }
        )
        fg = Client(s.url, "k")
        self.assertEqual(fg.get("job_1")["id"], "job_1")
        self.assertEqual(calls["n"], 3)
        with self.assertRaises(FloodgateApiError):
            fg.submit("demo", {})
        self.assertEqual(sum(1 for r in s.requests if r["method"] == "POST"), 1)

    def test_the_event_stream_resumes_with_last_event_id_and_never_yields_an_event_twice(self) -> None:
        connections: list[str | None] = []

        def events(h: BaseHTTPRequestHandler) -> None:
            connections.append(h.headers.get("last-event-id"))
            if len(connections) == 1:
                sse(h, [("g.1", "status", STATUS), ("g.2", "progress", {"phase": "sampling", "step": 1, "total": 2})])
            else:
                # The edge resends what it had after the resume point; an old one must be dropped.
                sse(
                    h,
                    [
                        ("g.2", "progress", {"phase": "sampling", "step": 1, "total": 2}),
                        ("g.3", "succeeded", {"outputs": [{"name": "out.gif", "url": "https://x/out.gif"}]}),
                    ],
                )

        s = self.stub({"GET /v1/jobs/job_1/events": events})
        seen = [e.id for e in Client(s.url, "k").events("job_1")]
        self.assertEqual(seen, ["g.1", "g.2", "g.3"])
        self.assertEqual(connections, [None, "g.2"])

    def test_wait_past_its_deadline_raises_a_timeout_that_carries_the_job_id(self) -> None:
        s = self.stub({"GET /v1/jobs/job_slow/events": lambda h: sse(h, [("g.1", "status", STATUS)], hold_s=5)})
        t0 = time.monotonic()
        with self.assertRaises(FloodgateTimeoutError) as caught:
            Client(s.url, "k").wait("job_slow", timeout_s=0.8)
        self.assertEqual(caught.exception.job_id, "job_slow")
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_a_failed_job_raises_with_its_code_and_id_and_a_cancelled_one_says_so(self) -> None:
        s = self.stub(
            {
                "GET /v1/jobs/job_f/events": lambda h: sse(
                    h, [("g.1", "failed", {"error": {"code": "oom", "message": "out of memory"}})]
                ),
                "GET /v1/jobs/job_c/events": lambda h: sse(h, [("g.1", "cancelled", {})]),
            }
        )
        fg = Client(s.url, "k")
        with self.assertRaises(JobFailedError) as caught:
            fg.wait("job_f", timeout_s=5)
        self.assertEqual((caught.exception.job_id, caught.exception.code), ("job_f", "oom"))
        with self.assertRaises(JobCancelledError) as cancelled:
            fg.wait("job_c", timeout_s=5)
        self.assertEqual(cancelled.exception.job_id, "job_c")

    def test_run_gives_its_submit_an_idempotency_key_and_reports_the_id_before_waiting(self) -> None:
        order: list[str] = []
        s = self.stub(
            {
                "POST /v1/models/demo/jobs": lambda h: send_json(h, 202, {"id": "job_r", "status": "queued"}),
                "GET /v1/jobs/job_r/events": lambda h: (order.append("events"), sse(h, [("g.1", "succeeded", {"outputs": []})])),
            }
        )
        result = Client(s.url, "k").run("demo", {"prompt": "x"}, on_submitted=lambda i: order.append(f"submitted {i}"))
        self.assertEqual(result.id, "job_r")
        self.assertEqual(order, ["submitted job_r", "events"])
        self.assertTrue(s.requests[0]["headers"].get("idempotency-key"))


FILE_ID = "file_0000000000000001"


class FileEdge:
    """The edge's file routes for one upload, in parts of ``part_bytes`` (the stand-in picks it,
    as the edge does): records the parts it stores and checks the sha256 given at complete."""

    def __init__(self, size: int, part_bytes: int, *, stored: dict[int, bytes] | None = None) -> None:
        self.size, self.part_bytes = size, part_bytes
        self.parts: dict[int, bytes] = dict(stored or {})
        self.status = "uploading"
        self.sha256: str | None = None

    def view(self) -> dict:
        return {
            "id": FILE_ID,
            "name": "in.png",
            "content_type": "image/png",
            "size": self.size,
            "status": self.status,
            "sha256": self.sha256,
            "part_bytes": self.part_bytes,
            "parts": -(-self.size // self.part_bytes),
            "created_at": "2026-01-01T00:00:00.000Z",
            "expires_at": "2026-01-08T00:00:00.000Z",
        }

    def routes(self) -> dict[str, Handler]:
        base = f"/v1/files/{FILE_ID}"

        def put(n: int) -> Handler:
            def handler(h: BaseHTTPRequestHandler) -> None:
                self.parts[n] = h.body  # type: ignore[attr-defined]
                send_json(h, 200, {"part_number": n, "size": len(self.parts[n])})

            return handler

        def complete(h: BaseHTTPRequestHandler) -> None:
            given = json.loads(h.body)["sha256"]  # type: ignore[attr-defined]
            whole = b"".join(self.parts[n] for n in sorted(self.parts))
            if hashlib.sha256(whole).hexdigest() != given:
                send_json(h, 400, {"error": {"code": "invalid_upload", "message": "the stored bytes hash otherwise"}})
                return
            self.status, self.sha256 = "ready", given
            send_json(h, 200, self.view())

        routes: dict[str, Handler] = {
            "POST /v1/files": lambda h: send_json(h, 201, self.view()),
            f"GET {base}": lambda h: send_json(h, 200, self.view()),
            f"GET {base}/parts": lambda h: send_json(
                h,
                200,
                {
                    "id": FILE_ID,
                    "status": self.status,
                    "part_bytes": self.part_bytes,
                    "parts": -(-self.size // self.part_bytes),
                    "stored": [{"part_number": n, "size": len(b)} for n, b in sorted(self.parts.items())],
                },
            ),
            f"POST {base}/complete": complete,
        }
        for n in range(1, -(-self.size // self.part_bytes) + 1):
            routes[f"PUT {base}/parts/{n}"] = put(n)
        return routes


class FilesTest(unittest.TestCase):
    def stub(self, routes: dict[str, Handler]) -> Stub:
        s = Stub(routes)
        self.addCleanup(s.close)
        return s

    def local(self, name: str, content: bytes) -> str:
        folder = tempfile.mkdtemp(prefix="floodgate-py-")
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(content)
        self.addCleanup(shutil.rmtree, folder, True)
        return path

    def test_an_upload_sends_the_parts_the_edge_sized_and_completes_with_the_sha256_of_the_bytes_read(self) -> None:
        content = b"0123456789"
        edge = FileEdge(len(content), 4)
        s = self.stub(edge.routes())
        progress: list[UploadProgress] = []
        file = Client(s.url, "k").files.upload(self.local("in.png", content), on_progress=progress.append)
        self.assertEqual((file["id"], file["status"]), (FILE_ID, "ready"))
        self.assertEqual(edge.parts, {1: b"0123", 2: b"4567", 3: b"89"})
        create = s.requests[0]
        self.assertEqual(json.loads(create["body"]), {"name": "in.png", "content_type": "image/png", "size": 10})
        put = s.requests[1]
        self.assertEqual((put["method"], put["headers"]["content-type"]), ("PUT", "application/octet-stream"))
        self.assertEqual(json.loads(s.requests[-1]["body"]), {"sha256": hashlib.sha256(content).hexdigest()})
        self.assertEqual([(p.name, p.sent, p.total) for p in progress], [("in.png", 4, 10), ("in.png", 8, 10), ("in.png", 10, 10)])

    def test_a_resumed_upload_sends_only_the_parts_the_edge_has_not_stored_at_their_full_length(self) -> None:
        content = b"0123456789"
        # Part 1 stored whole, part 2 cut short: part 2 and 3 are sent again.
        edge = FileEdge(len(content), 4, stored={1: b"0123", 2: b"45"})
        s = self.stub(edge.routes())
        file = Client(s.url, "k").files.upload(self.local("in.png", content), resume=FILE_ID)
        self.assertEqual(file["status"], "ready")
        sent = [r["path"] for r in s.requests if r["method"] == "PUT"]
        self.assertEqual(sent, [f"/v1/files/{FILE_ID}/parts/2", f"/v1/files/{FILE_ID}/parts/3"])
        self.assertFalse(any(r["path"] == "/v1/files" for r in s.requests))

    def test_resuming_with_a_file_of_another_size_or_other_bytes_fails_without_sending_a_part(self) -> None:
        edge = FileEdge(12, 4)
        s = self.stub(edge.routes())
        with self.assertRaises(FloodgateError) as caught:
            Client(s.url, "k").files.upload(self.local("in.png", b"0123456789"), resume=FILE_ID)
        self.assertIn("10 bytes", str(caught.exception))
        done = FileEdge(10, 4)
        done.status, done.sha256 = "ready", hashlib.sha256(b"0123456789").hexdigest()
        s2 = self.stub(done.routes())
        fg = Client(s2.url, "k")
        self.assertEqual(fg.files.upload(self.local("in.png", b"0123456789"), resume=FILE_ID)["id"], FILE_ID)
        with self.assertRaises(FloodgateError):
            fg.files.upload(self.local("in.png", b"9876543210"), resume=FILE_ID)
        self.assertFalse(any(r["method"] == "PUT" for r in s.requests + s2.requests))

    def test_bytes_that_do_not_hash_to_the_local_sha256_are_refused_by_the_edge_with_its_code(self) -> None:
        edge = FileEdge(10, 4)
        routes = edge.routes()
        # The stand-in stores part 2 corrupted, as a broken proxy might.
        routes[f"PUT /v1/files/{FILE_ID}/parts/2"] = lambda h: (
            edge.parts.__setitem__(2, b"xxxx"),
            send_json(h, 200, {"part_number": 2, "size": 4}),
        )
        s = self.stub(routes)
        with self.assertRaises(FloodgateApiError) as caught:
            Client(s.url, "k").files.upload(self.local("in.png", b"0123456789"))
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "invalid_upload"))

    def test_a_missing_empty_or_untyped_local_file_is_an_error_before_anything_is_sent(self) -> None:
        s = self.stub({})
        fg = Client(s.url, "k")
        cases = [
            (os.path.join(tempfile.gettempdir(), "floodgate-no-such-file.png"), "cannot read"),
            (self.local("empty.png", b""), "is empty"),
            (self.local("notes.txt", b"text"), "no media type"),
        ]
        for path, says in cases:
            with self.assertRaises(FloodgateError) as caught:
                fg.files.upload(path)
            self.assertIn(says, str(caught.exception))
            with self.assertRaises(FloodgateError):
                fg.submit("demo", {"prompt": "x", "image": LocalFile(path)})
        # A submit whose second file is missing uploads neither.
        with self.assertRaises(FloodgateError):
            fg.submit("demo", {"image": LocalFile(self.local("a.png", b"png")), "video": LocalFile(cases[0][0])})
        self.assertEqual(s.requests, [])

    def test_a_submit_uploads_a_local_file_value_first_and_sends_its_file_id_in_its_place(self) -> None:
        edge = FileEdge(5, 4)
        routes = edge.routes()
        routes["POST /v1/models/demo/jobs"] = lambda h: send_json(h, 202, {"id": "job_1", "status": "queued"})
        s = self.stub(routes)
        progress: list[UploadProgress] = []
        path = self.local("clip.mp4", b"movie")
        answer = Client(s.url, "k").submit(
            "demo", {"prompt": "snow", "video": LocalFile(path), "steps": 3}, on_upload_progress=progress.append
        )
        self.assertEqual(answer["id"], "job_1")
        self.assertEqual(json.loads(s.requests[0]["body"])["content_type"], "video/mp4")
        self.assertEqual(json.loads(s.requests[-1]["body"]), {"input": {"prompt": "snow", "video": FILE_ID, "steps": 3}})
        self.assertEqual([(p.field, p.name, p.sent) for p in progress], [("video", "clip.mp4", 4), ("video", "clip.mp4", 5)])

    def test_get_list_and_delete_use_the_file_routes_and_an_unknown_file_is_file_not_found(self) -> None:
        s = self.stub(
            {
                f"GET /v1/files/{FILE_ID}": lambda h: send_json(
                    h, 404, {"error": {"code": "file_not_found", "message": "no such input file"}}
                ),
                "GET /v1/files?limit=2&cursor=file_000000000000000a": lambda h: send_json(
                    h, 200, {"files": [], "next_cursor": None}
                ),
                f"DELETE /v1/files/{FILE_ID}": lambda h: (h.send_response(204), h.end_headers()),
            }
        )
        fg = Client(s.url, "k")
        with self.assertRaises(FloodgateApiError) as caught:
            fg.files.get(FILE_ID)
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "file_not_found"))
        self.assertEqual(fg.files.list(limit=2, cursor="file_000000000000000a"), {"files": [], "next_cursor": None})
        self.assertIsNone(fg.files.delete(FILE_ID))
        self.assertEqual(s.requests[-1]["method"], "DELETE")


if __name__ == "__main__":
    unittest.main()
