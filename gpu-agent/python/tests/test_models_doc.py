"""docs/models.md's worked example, run as written there: the model class, the script that
makes its weights, its manifest, and the script that tries it on a runner process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from .support import ROOT

PACKAGE = ROOT / "gpu-agent" / "python"
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\s*```\w*\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return {path: body for path, body in EXAMPLE.findall((ROOT / "docs" / "models.md").read_text("utf-8"))}


class ModelsDoc(unittest.TestCase):
    def test_the_worked_example_packages_a_model_the_runner_serves(self):
        files = examples()
        self.assertEqual(sorted(files), ["fade/fade.py", "fade/manifest.json", "make_weights.py", "try.py"])
        with tempfile.TemporaryDirectory() as d:
            for path, body in files.items():
                (Path(d) / path).parent.mkdir(parents=True, exist_ok=True)
                (Path(d) / path).write_text(body, "utf-8")
            env = {**os.environ, "PYTHONPATH": str(PACKAGE)}
            run = lambda *args: subprocess.run(  # noqa: E731
                [sys.executable, "-B", *args], cwd=d, env=env, capture_output=True, text=True, timeout=240
            )
            made = run("make_weights.py", "fade")
            self.assertEqual(made.returncode, 0, made.stderr)
            tried = run("try.py", "fade")
            self.assertEqual(tried.returncode, 0, tried.stderr)
            self.assertEqual(tried.stdout.strip(), "job.done 8 frames")
