"""``medtl app``: start the Streamlit clinician app (``app/main.py``) as a subprocess.

The app lives in the top-level ``app/`` folder of the source checkout, next to the
``medtl`` package, not inside it: ``medtl app`` therefore needs a source checkout (an
editable install, ``pip install -e .``), or ``MEDTL_APP_PATH`` naming ``app/main.py``.

The server runs from the checkout root, so the checked-in ``.streamlit/config.toml`` applies
(as it does to ``streamlit run app/main.py`` started there). The security-relevant options
are passed on the command line as well, so they hold even where that file is missing:
loopback address unless told otherwise (a wider address is logged as a warning), XSRF
protection and CORS on, no error details in the page, a viewer-only toolbar, a short TTL of
disconnected sessions, headless, no usage statistics, no file watcher, and the upload limit
of the app's settings (``MEDTL_APP_MAX_UPLOAD_MB`` or ``MEDTL_HOME/app.toml``, see
``app/config.py``). See ``docs/security.md``.

``app`` is a Typer sub-app with one command, ``app``; ``medtl``'s main app adds it with
``app.add_typer(launcher_app)`` so the command is ``medtl app [--port N]``.

Example::

    proc = launch_app(port=8501)        # returns at once; the server starts in the child
    wait_until_ready("http://localhost:8501", timeout=60)
    ...
    proc.terminate()
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from medtl._cli import fail
from medtl._net import free_port

logger = logging.getLogger(__name__)

ENV_APP_PATH = "MEDTL_APP_PATH"
DEFAULT_MAX_UPLOAD_MB = 512.0
DEFAULT_ADDRESS = "127.0.0.1"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Seconds a disconnected browser session (its state and media) is kept.
DISCONNECTED_SESSION_TTL_S = 30

app = typer.Typer(
    help="Start the clinician web app.", add_completion=False, pretty_exceptions_enable=False
)


def find_app_main() -> Path:
    """Locate ``app/main.py``.

    Returns:
        ``$MEDTL_APP_PATH`` when set, else ``<checkout>/app/main.py`` next to the installed
        ``medtl`` package.

    Raises:
        FileNotFoundError: no app found (medtl installed from a wheel, without the
            checkout): the message says what to do.
    """
    env = os.environ.get(ENV_APP_PATH)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent / "app" / "main.py")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise FileNotFoundError(
        "the clinician app (app/main.py) was not found: `medtl app` needs a source checkout "
        "of medtl installed with `pip install -e .`, or MEDTL_APP_PATH set to app/main.py"
    )


def upload_limit_mb(main: Path, env: dict[str, str] | None = None) -> float:
    """The app's configured upload limit in MiB.

    Args:
        main: path of ``app/main.py`` (its ``config.py`` reads ``MEDTL_HOME/app.toml``).
        env: the app's environment (default: this process's).

    Returns:
        ``MEDTL_APP_MAX_UPLOAD_MB`` of ``env``, else the app's settings, else 512.
    """
    env = dict(os.environ if env is None else env)
    raw = env.get("MEDTL_APP_MAX_UPLOAD_MB")
    if raw:
        try:
            return float(raw)
        except ValueError:
            logger.warning("ignoring invalid MEDTL_APP_MAX_UPLOAD_MB=%r", raw)
    config = main.parent / "config.py"
    spec = importlib.util.spec_from_file_location("_medtl_app_config", config)
    if not config.is_file() or spec is None or spec.loader is None:
        return DEFAULT_MAX_UPLOAD_MB
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    home = Path(env["MEDTL_HOME"]) if env.get("MEDTL_HOME") else None
    return float(module.load_settings(home).max_upload_mb)


def streamlit_command(
    main: Path,
    port: int,
    *,
    headless: bool = True,
    address: str = DEFAULT_ADDRESS,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
) -> list[str]:
    """The ``streamlit run`` command line of the app.

    Args:
        main: path of ``app/main.py``.
        port: TCP port.
        headless: do not open a browser.
        address: interface to listen on (``0.0.0.0`` for every interface).
        max_upload_mb: Streamlit's upload limit (whole MiB, at least 1).

    Returns:
        The argument list (runs ``python -m streamlit`` of this interpreter).
    """
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(main),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true" if headless else "false",
        "--server.maxUploadSize",
        str(max(1, math.ceil(max_upload_mb))),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--server.enableXsrfProtection",
        "true",
        "--server.enableCORS",
        "true",
        "--server.disconnectedSessionTTL",
        str(DISCONNECTED_SESSION_TTL_S),
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


def warn_if_wide(address: str) -> bool:
    """Log a warning when ``address`` is not a loopback address; True when it is wide."""
    if address.strip("[]") in LOOPBACK:
        return False
    logger.warning(
        "the clinician app will listen on %s, reachable from other machines: serve it only "
        "through the TLS reverse proxy of docs/deploy/nginx.conf",
        address or "every interface",
    )
    return True


def launch_app(
    port: int | None = None,
    headless: bool = True,
    *,
    address: str = DEFAULT_ADDRESS,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the app in a child process and return at once.

    Args:
        port: TCP port (``None``: a free one; read it from ``proc.args``).
        headless: do not open a browser.
        address: interface to listen on.
        env: environment of the child (default: this process's).
        log_file: write the server's output there (default: inherit this process's).

    Returns:
        The running ``streamlit run`` process.
    """
    main = find_app_main()
    port = port if port is not None else free_port()
    child_env = dict(os.environ if env is None else env)
    limit = upload_limit_mb(main, child_env)
    warn_if_wide(address)
    cmd = streamlit_command(main, port, headless=headless, address=address, max_upload_mb=limit)
    out = open(log_file, "wb") if log_file is not None else None  # noqa: SIM115 - child owns it
    try:
        proc = subprocess.Popen(
            cmd,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            cwd=str(main.parent.parent),
        )
    finally:
        if out is not None:
            out.close()
    logger.info("clinician app starting on http://%s:%d", address, port)
    return proc


def wait_until_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll Streamlit's health endpoint until it answers.

    Args:
        url: base URL, e.g. ``http://localhost:8501``.
        timeout: seconds to wait.
        proc: the server process (fail fast if it exits).

    Raises:
        TimeoutError: not ready in time. RuntimeError: the process exited.
    """
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/_stcore/health"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


@app.command("app")
def run_app(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8501,
    address: Annotated[
        str,
        typer.Option(
            help="Interface to listen on. Default: this machine only. Another address "
            "(0.0.0.0: every interface) needs the reverse proxy of docs/deploy/nginx.conf."
        ),
    ] = DEFAULT_ADDRESS,
    browser: Annotated[bool, typer.Option(help="Open a browser window.")] = False,
) -> None:
    """Start the clinician app (needs a source checkout; see `medtl.app_launcher`)."""
    try:
        proc = launch_app(port=port, headless=not browser, address=address)
    except FileNotFoundError as err:
        raise fail(err) from None
    typer.echo(f"medtl app: http://{address}:{port} (Ctrl-C to stop)")
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise typer.Exit(130) from None
