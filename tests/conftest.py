"""Test environment: offline, seeded, and able to import the test helpers in this folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Read by huggingface_hub at import: nothing in the test run may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402

from hub_cache import offline_hub_cache  # noqa: E402


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An empty offline hub cache under tmp_path (see tests/hub_cache.py)."""
    return offline_hub_cache(tmp_path, monkeypatch)
