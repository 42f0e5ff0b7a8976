"""The Python client against the real local stack: run by test/e2e/python-client.test.ts, which
starts `floodgate dev` with one demo agent and passes its URL, user key and admin key in
FLOODGATE_URL, FLOODGATE_API_KEY and FLOODGATE_ADMIN_KEY. Not a test_*.py module: `npm run
test:python` (no stack) does not collect it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import unittest
import urllib.request
import zlib
from typing import Any

from floodgate_client import (
    Client,
    FloodgateApiError,
    FloodgateTimeoutError,
    JobCancelledError,
    LocalFile,
    UploadProgress,
)

QUICK = {"prompt": "a red fox", "frames": 2, "size": 32, "steps": 3}
# Enough steps that the job is still running when the test looks at it.
SLOW = {"prompt": "a slow fox", "frames": 8, "size": 64, "steps": 100}


MiB = 1024 * 1024


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour (8-bit RGB), written with zlib as the PNG standard lays it out."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Recording(Client):
    """A client that notes each request it sends (method and path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, str]] = []

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.sent.append((method, path))
        return super()._request(method, path, **kwargs)


class StackTest(unittest.TestCase):
    fg: Client
    dir: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.fg = Client(os.environ["FLOODGATE_URL"], os.environ["FLOODGATE_API_KEY"])
        cls.dir = tempfile.mkdtemp(prefix="floodgate-py-e2e-")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.dir, ignore_errors=True)

    def other_account(self) -> Client:
        """A second account of the stack, made with the admin key."""
        req = urllib.request.Request(
            os.environ["FLOODGATE_URL"] + "/v1/admin/accounts",
            data=json.dumps({"name": "python-other", "tier": "plus"}).encode(),
            method="POST",
            headers={"authorization": f"Bearer {os.environ['FLOODGATE_ADMIN_KEY']}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as res:  # noqa: S310 (the local stack)
            return Client(os.environ["FLOODGATE_URL"], json.loads(res.read())["api_key"])

    def test_a_local_image_is_uploaded_at_submit_and_the_job_runs_from_it_and_no_other_account_can_use_it(self) -> None:
        path = os.path.join(self.dir, "red.png")
        with open(path, "wb") as f:
            f.write(png(24, 16, (220, 20, 20)))
        progress: list[UploadProgress] = []
        result = self.fg.run(
            "demo",
            {"prompt": "make it snow", "image": LocalFile(path), "frames": 2, "size": 32, "steps": 2},
            timeout_s=90,
            on_upload_progress=progress.append,
        )
        self.assertEqual((progress[-1].field, progress[-1].name), ("image", "red.png"))
        params = next(o for o in result.outputs if o["name"] == "params.json")
        with urllib.request.urlopen(params["url"], timeout=30) as res:  # noqa: S310 (the local stack)
            self.assertEqual(json.loads(res.read())["source"], "image")

        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        file = next(f for f in self.fg.files.list()["files"] if f["name"] == "red.png")
        self.assertEqual((file["status"], file["content_type"], file["sha256"]), ("ready", "image/png", digest))

        other = self.other_account()
        for attempt in (lambda: other.files.get(file["id"]), lambda: other.submit("demo", {"prompt": "x", "image": file["id"]})):
            with self.assertRaises(FloodgateApiError) as caught:
                attempt()
            self.assertEqual((caught.exception.status, caught.exception.code), (404, "file_not_found"))

        self.fg.files.delete(file["id"])
        with self.assertRaises(FloodgateApiError) as gone:
            self.fg.files.get(file["id"])
        self.assertEqual(gone.exception.code, "file_not_found")

    def test_an_upload_broken_off_resumes_sending_only_the_parts_the_edge_lacks(self) -> None:
        path = os.path.join(self.dir, "big.mp4")
        content = os.urandom(5 * MiB + 1000)
        with open(path, "wb") as f:
            f.write(content)

        class Stop(Exception):
            pass

        def stop_after_the_first_part(p: UploadProgress) -> None:
            raise Stop()

        with self.assertRaises(Stop):
            self.fg.files.upload(path, part_bytes=5 * MiB, on_progress=stop_after_the_first_part)
        broken = next(f for f in self.fg.files.list()["files"] if f["name"] == "big.mp4")
        self.assertEqual((broken["status"], broken["parts"]), ("uploading", 2))

        fg = Recording(os.environ["FLOODGATE_URL"], os.environ["FLOODGATE_API_KEY"])
        file = fg.files.upload(path, resume=broken["id"])
        self.assertEqual((file["id"], file["status"]), (broken["id"], "ready"))
        self.assertEqual(file["sha256"], hashlib.sha256(content).hexdigest())
        self.assertEqual([p for m, p in fg.sent if m == "PUT"], [f"/v1/files/{broken['id']}/parts/2"])
        fg.files.delete(file["id"])

    def test_run_submits_follows_the_events_and_answers_the_outputs(self) -> None:
        submitted: list[str] = []
        events: list[str] = []
        result = self.fg.run(
            "demo", QUICK, timeout_s=90, on_submitted=submitted.append, on_event=lambda e: events.append(e.event)
        )
        self.assertEqual(submitted, [result.id])
        self.assertEqual(events[-1], "succeeded")
        self.assertEqual(events.count("succeeded"), 1)
        self.assertTrue(result.outputs)
        self.assertTrue(all(o["url"] for o in result.outputs))
        self.assertEqual(self.fg.get(result.id)["status"], "succeeded")

    def test_events_resume_after_the_last_seen_id_without_repeating_one(self) -> None:
        job_id = self.fg.submit("demo", QUICK)["id"]
        first = []
        for event in self.fg.events(job_id):
            first.append(event)
            if len(first) == 2 or event.terminal:
                break
        rest = list(self.fg.events(job_id, last_event_id=first[-1].id))
        ids = [e.id for e in first + rest]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertIn((first + rest)[-1].event, ("succeeded",))

    def test_an_unknown_job_is_an_api_error_with_its_code_and_id(self) -> None:
        with self.assertRaises(FloodgateApiError) as caught:
            self.fg.get("job_00000000000000000000000000")
        self.assertEqual(caught.exception.status, 404)
        self.assertEqual(caught.exception.job_id, "job_00000000000000000000000000")
        self.assertIn(caught.exception.code, ("job_not_found", "bad_request"))

    def test_a_deadline_leaves_the_job_running_and_says_its_id_then_cancel_ends_it(self) -> None:
        job_id = self.fg.submit("demo", SLOW)["id"]
        with self.assertRaises(FloodgateTimeoutError) as caught:
            self.fg.wait(job_id, timeout_s=1.0)
        self.assertEqual(caught.exception.job_id, job_id)
        self.assertIn(self.fg.get(job_id)["status"], ("queued", "running"))
        self.fg.cancel(job_id)
        with self.assertRaises(JobCancelledError):
            self.fg.wait(job_id, timeout_s=60)


if __name__ == "__main__":
    unittest.main()
