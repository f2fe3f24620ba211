"""The ``avat3r`` command: the Typer app, its one error boundary and the command list.

Exit codes: 0 success; 1 a known failure (``Avat3rError`` or an OS error such as a permission
problem), printed as one ``Error: ...`` line on stderr; 2 a usage error (unknown option, bad
type); 130 Ctrl-C; 143 SIGTERM (128 + 15, what a shell reports for a process the signal ended:
``timeout``, job schedulers and ``docker stop`` send it). Both signals unwind the command the same
way, so its temporary outputs are removed. ``AVAT3R_DEBUG=1`` adds the traceback above the error
line. Anything else is a bug and keeps Python's traceback.

Startup stays light: this module and the command modules import neither torch nor gsplat at
module level (commands import their L3 pipeline inside the function body), so ``avat3r --help``
and ``avat3r --version`` return at once.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from avat3r_cli import __version__
from avat3r_cli.cli.help_format import FlagsWithoutTypeCommand, FlagsWithoutTypeGroup
from avat3r_cli.cli import (
    animate_cmd,
    create_cmd,
    evaluate_cmd,
    info_cmd,
    models_cmd,
    prepare_cmd,
    preprocess_cmd,
    render_cmd,
    synth_cmd,
    track_cmd,
    train_cmd,
    weights_cmd,
)
from avat3r_cli.core.errors import Avat3rError

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

# Every subcommand, in help order. Adding one is one line: a module in cli/ exposes either a
# plain function (registered with ``app.command``) or a ``typer.Typer`` (a group of subcommands,
# registered with ``app.add_typer``), and its name goes here.
COMMANDS: list[tuple[str, Callable[..., Any] | typer.Typer]] = [
    ("create", create_cmd.create),
    ("animate", animate_cmd.animate),
    ("track", track_cmd.track),
    ("info", info_cmd.info),
    ("render", render_cmd.render),
    ("preprocess", preprocess_cmd.preprocess),
    ("synth", synth_cmd.synth),
    ("prepare-data", prepare_cmd.prepare_data),
    ("train", train_cmd.train),
    ("evaluate", evaluate_cmd.evaluate),
    ("models", models_cmd.models),
    ("weights", weights_cmd.app),
]

# Messages and progress go to stderr so stdout carries only results (--json) for pipelines.
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def debug_enabled() -> bool:
    """True when ``AVAT3R_DEBUG`` is set to something other than empty, 0, false, no or off."""
    return os.environ.get("AVAT3R_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, Avat3rError):
        # str(OSError) is "[Errno 13] Permission denied: 'x'"; lead with the file as our errors do.
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def report_error(exc: BaseException) -> None:
    """Print ``exc`` as one ``Error: ...`` line on stderr (after its traceback under AVAT3R_DEBUG)."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    # One physical line even for messages with newlines: scripts grep stderr line by line.
    message = " ".join(_error_line(exc).split("\n"))
    _stderr.print(Text.assemble(("Error: ", "bold red"), message))


SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like KeyboardInterrupt.

    A BaseException, not an Exception: code that handles failures (a batch that goes on with the
    next subject) must not swallow it; cleanup (``finally``, ``atomic_output``) still runs.
    """


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While active, SIGTERM raises ``Terminated`` once; repeats are ignored so cleanup can finish."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. under some test runners)
        return
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Avat3rGroup(FlagsWithoutTypeGroup):
    """The root group; its ``invoke`` is the CLI's only error boundary."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with sigterm_unwinds():
                return super().invoke(ctx)
        except Terminated:
            _stderr.print("Terminated (SIGTERM); unfinished outputs were removed", markup=False)
            raise typer.Exit(SIGTERM_EXIT) from None
        except Avat3rError as exc:
            report_error(exc)
            raise typer.Exit(1) from None
        except BrokenPipeError:
            raise  # the reader went away (e.g. `| head`); Typer exits quietly
        except OSError as exc:
            # Disk full, permission denied, read-only folder: the user can act on these.
            report_error(exc)
            raise typer.Exit(1) from None


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"avat3r {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="avat3r",
    cls=Avat3rGroup,
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
    add_completion=False,
    # Our boundary decides what users see; Typer's pretty tracebacks would bypass AVAT3R_DEBUG.
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """A few photos of a head in, an animatable 3D Gaussian avatar out (Avat3r).

    Set AVAT3R_DEBUG=1 to see the traceback behind an error.
    """


for _name, _target in COMMANDS:
    if isinstance(_target, typer.Typer):
        app.add_typer(_target, name=_name, context_settings=CONTEXT_SETTINGS, cls=FlagsWithoutTypeGroup)
    else:
        app.command(_name, context_settings=CONTEXT_SETTINGS, cls=FlagsWithoutTypeCommand)(_target)


def main() -> None:
    """Console-script entry point (``avat3r``) and ``python -m avat3r_cli``."""
    app(prog_name="avat3r")
