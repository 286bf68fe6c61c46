"""``python -m gsim_async.sandbox`` starts, prints its URL and key, and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import gsim_async.sandbox

# Run the package from where it is imported, installed or not.
ROOT = Path(gsim_async.sandbox.__file__).resolve().parent.parent.parent


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_cli_serves_until_interrupted() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsim_async.sandbox", "--port", "0", "--seed", "1",
         "--balance", "7.25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"gsim sandbox listening on (http://127\.0\.0\.1:\d+)  api key: (2s_\w{40})\n", line
        )
        assert match, line
        url, key = match.groups()
        request = urllib.request.Request(  # noqa: S310 (an http:// URL we just read)
            url + "/api/v1/balance", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read()) == {"balance": 7.25, "currency": "USD"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
