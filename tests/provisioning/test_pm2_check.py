"""scripts/pm2.sh asks PM2 whether an app runs before `make up` starts it. On a fresh machine, or
after a reboot, no PM2 daemon runs yet: the check must start one quietly and answer, without a
traceback. A private PM2_HOME keeps root's daemon (the one `make up` uses) out of the test."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pm2(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PM2_HOME": str(home)}
    return subprocess.run(
        ["bash", "-c", 'source scripts/pm2.sh && "$@"', "pm2.sh", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_online_check_with_no_daemon_running_answers_quietly(tmp_path):
    home = tmp_path / "pm2"
    try:
        online = pm2(home, "pm2_is_online", "inventory_app")
        status = pm2(home, "pm2_status", "inventory_app")
        # The daemon the check started is the private one.
        started_here = (home / "pm2.pid").exists()
    finally:
        subprocess.run(
            ["pm2", "kill"], env={**os.environ, "PM2_HOME": str(home)}, capture_output=True
        )
    assert (online.returncode, online.stdout, online.stderr) == (1, "", "")
    assert (status.returncode, status.stdout, status.stderr) == (0, "absent\n", "")
    assert started_here
