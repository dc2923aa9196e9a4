"""Process-wide runtime settings applied when a command starts (never at import time)."""

import os

OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "HF_HUB_OFFLINE": "1",
}


def apply_offline_env() -> None:
    """Switch off telemetry and downloads for this process and its children (user settings win)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
