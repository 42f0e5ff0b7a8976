"""The Python client against the real local stack: run by test/e2e/python-client.test.ts, which
starts `floodgate dev` with one demo agent and passes its URL and user key in FLOODGATE_URL and
FLOODGATE_API_KEY. Not a test_*.py module: `npm run test:python` (no stack) does not collect it."""

from __future__ import annotations

import os
import unittest

from floodgate_client import (
    Client,
    FloodgateApiError,
    FloodgateTimeoutError,
    JobCancelledError,
)

QUICK = {"prompt": "a red fox", "frames": 2, "size": 32, "steps": 3}
# Enough steps that the job is still running when the test looks at it.
SLOW = {"prompt": "a slow fox", "frames": 8, "size": 64, "steps": 100}


class StackTest(unittest.TestCase):
    fg: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.fg = Client(os.environ["FLOODGATE_URL"], os.environ["FLOODGATE_API_KEY"])

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
