"""Test environment: offline, seeded, isolated from the user's home, and able to import the test
helpers in this folder.

Isolation: for the whole session HOME, the XDG folders, the Hugging Face cache, matplotlib's
folders and TMPDIR point into the session's pytest temporary folder, and the user's own
``AVAT3R_CACHE`` is forgotten, so nothing the code under test caches (the preprocessing cache
defaults to ``$XDG_CACHE_HOME/avat3r-cli``) lands in ``~/.cache``. Everything a test (or the code
it runs) puts into TMPDIR must be gone when it ends: a test that leaves a temporary file or
folder fails, naming it, and so does the session for anything left by module fixtures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Read by huggingface_hub at import: nothing in the test run may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GLOG_minloglevel", "2")
# The user's own cache location must not be used by tests (fixtures set their own).
os.environ.pop("AVAT3R_CACHE", None)
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402

from hub_cache import offline_hub_cache  # noqa: E402

_HUB_CONSTANTS = {  # huggingface_hub.constants attribute -> the folder under HF_HOME
    "HF_HOME": "", "HF_HUB_CACHE": "hub", "HUGGINGFACE_HUB_CACHE": "hub", "HF_ASSETS_CACHE": "assets",
    "HUGGINGFACE_ASSETS_CACHE": "assets", "HF_XET_CACHE": "xet", "HF_TOKEN_PATH": "token",
}  # fmt: skip


_SESSION_TMPDIR: list[Path] = []  # the isolated TMPDIR, for the check at the end of the session


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """The session's HOME, caches and TMPDIR under the pytest temporary folder (module docstring)."""
    root = tmp_path_factory.mktemp("isolated")
    home, temp = root / "home", root / "tmp"
    temp.mkdir()
    _SESSION_TMPDIR.append(temp)
    hf_home = home / ".cache" / "huggingface"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        mp.setenv("HF_HOME", str(hf_home))
        mp.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
        mp.setenv("MPLCONFIGDIR", str(home / ".config" / "matplotlib"))
        # torch creates its compiler cache on the first optimizer, by default in TMPDIR.
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(home / ".cache" / "torchinductor"))
        mp.setenv("TMPDIR", str(temp))
        mp.setattr(tempfile, "tempdir", str(temp))
        # huggingface_hub fixes its folders when imported; it may already be (a plugin, conftest).
        if "huggingface_hub.constants" in sys.modules:
            constants = sys.modules["huggingface_hub.constants"]
            for name, sub in _HUB_CONSTANTS.items():
                if hasattr(constants, name):
                    mp.setattr(constants, name, str(hf_home / sub) if sub else str(hf_home))
        yield temp


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """After every fixture is torn down: anything left in TMPDIR (e.g. by a module fixture) fails the run."""
    left = sorted(p.name for t in _SESSION_TMPDIR if t.is_dir() for p in t.iterdir())
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"FAILED: the test session left temporary files in TMPDIR: {', '.join(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def no_temporaries_left(isolated_environment: Path):
    """Fail the test that leaves anything new in TMPDIR (a mkdtemp without cleanup, a stray staging file)."""
    before = set(os.listdir(isolated_environment))
    yield
    left = sorted(set(os.listdir(isolated_environment)) - before)
    if left:
        pytest.fail(f"this test left temporary files in TMPDIR: {', '.join(left)}", pytrace=False)


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An empty offline hub cache under tmp_path (see tests/hub_cache.py)."""
    return offline_hub_cache(tmp_path, monkeypatch)
