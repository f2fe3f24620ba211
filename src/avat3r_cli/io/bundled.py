"""Files shipped inside the package: the default model and the MediaPipe models.

They live in ``avat3r_cli/assets/`` (``avat3r-small/``, ``mediapipe/``) and are package data, so
a source checkout, an editable install and a built wheel all find them the same way, through
``importlib.resources``, never by walking up from this file to a source tree. ``AVAT3R_ASSETS``
names another folder with the same layout (a copy on a fast disk, a trimmed container image).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import unquote, urlparse

from avat3r_cli import __version__
from avat3r_cli.core.errors import Avat3rError

ASSETS_ENV = "AVAT3R_ASSETS"


def assets_dir() -> Path:
    """The folder of bundled files: ``$AVAT3R_ASSETS`` when set, else the package's ``assets/``.

    Read at every call, so an override set after import (tests, wrappers) applies.

    Raises:
        Avat3rError: the package is installed in a form with no real folder (e.g. a zip).
    """
    override = os.environ.get(ASSETS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    folder = resources.files("avat3r_cli") / "assets"
    if not isinstance(folder, Path):
        raise Avat3rError(
            f"avat3r_cli is installed without a plain folder for its assets ({folder}); "
            f"install it unpacked (pip install) or set {ASSETS_ENV} to a folder holding avat3r-small/ and mediapipe/"
        )
    return folder


def asset_path(relative: str | Path) -> Path:
    """``assets_dir() / relative`` (relative like ``mediapipe/face_landmarker_v2.task``)."""
    return assets_dir() / relative


def overridden() -> bool:
    """True when ``AVAT3R_ASSETS`` chooses the folder (error messages then say so)."""
    return bool(os.environ.get(ASSETS_ENV, "").strip())


def restore_hint(path: Path) -> str:
    """A command that brings back a damaged or missing bundled file at ``path``.

    In a git checkout it is ``git checkout`` of the tracked file; in an installed package a
    reinstall; under ``AVAT3R_ASSETS`` it names the override, since only the user knows that copy.
    """
    if overridden():
        return f"restore it in {assets_dir()} or unset {ASSETS_ENV} to use the installed copy"
    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / ".git").exists():
            return f"restore it with: git -C {parent} checkout -- {path.relative_to(parent)}"
    return f"reinstall the package: {reinstall_command()}"


def reinstall_command() -> str:
    """The pip command that reinstalls this package from where it came (PEP 610 ``direct_url.json``).

    A wheel or folder installed by path is reinstalled from that path; an index install by
    name and version. The interpreter is named so the command targets this environment.
    """
    source = f"avat3r-cli=={__version__}"
    try:
        text = metadata.distribution("avat3r-cli").read_text("direct_url.json")
        url = json.loads(text)["url"] if text else ""
    except (metadata.PackageNotFoundError, ValueError, KeyError, TypeError):
        url = ""
    if url.startswith("file://"):
        source = unquote(urlparse(url).path)
    elif url:
        source = url
    return f"{shlex.quote(sys.executable)} -m pip install --force-reinstall --no-deps {shlex.quote(source)}"
