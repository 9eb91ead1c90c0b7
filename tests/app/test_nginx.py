"""The shipped reverse-proxy configuration (docs/deploy/nginx.conf) run by a real nginx in
front of a real ``streamlit run app/main.py``, with a self-signed certificate.

Repeats issue 15's server attacks: a forged Host (DNS rebinding) gets no page and no
WebSocket, an unknown TLS name gets no handshake, the security headers are present, an
upload above the limit is refused by the proxy; and the app started the README way, with
no address flag, listens on 127.0.0.1 only (the checked-in .streamlit/config.toml).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtl.app_launcher import free_port, wait_until_ready

from .helpers import APP_MAIN, PASSWORD, cheap_hasher, sign_in_browser

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED = APP_MAIN.parents[1] / "docs" / "deploy" / "nginx.conf"
NAME = "medtl.example.org"
FORGED = "evil.example"


def _proxy_config(tmp: Path, tls: int, plain: int, app: int, cert: Path, key: Path) -> Path:
    """The shipped site file with this test's ports, certificate and a 1 MiB upload limit,
    inside a minimal main configuration that keeps every file in ``tmp``."""
    site = SHIPPED.read_text(encoding="utf-8")
    swaps = {
        "listen 443 ssl default_server;": f"listen 127.0.0.1:{tls} ssl default_server;",
        "listen 443 ssl;": f"listen 127.0.0.1:{tls} ssl;",
        "listen 80 default_server;": f"listen 127.0.0.1:{plain} default_server;",
        "listen 80;": f"listen 127.0.0.1:{plain};",
        "server 127.0.0.1:8501;": f"server 127.0.0.1:{app};",
        "/etc/ssl/medtl/medtl.crt": str(cert),
        "/etc/ssl/medtl/medtl.key": str(key),
        "client_max_body_size 512m;": "client_max_body_size 1m;",
    }
    for old, new in swaps.items():
        assert old in site, f"docs/deploy/nginx.conf no longer has {old!r}"
        site = site.replace(old, new)
    (tmp / "site.conf").write_text(site, encoding="utf-8")
    temp = {k: tmp / k for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp (0700)
    main = (
        f"{user}worker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} info;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n access_log {tmp / 'access.log'};\n"
        + "".join(f" {k}_temp_path {v};\n" for k, v in temp.items()).replace(
            "body_temp_path", "client_body_temp_path"
        )
        + f" include {tmp / 'site.conf'};\n}}\n"
    )
    (tmp / "nginx.conf").write_text(main, encoding="utf-8")
    return tmp / "nginx.conf"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "medtl.crt", tmp / "medtl.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _listen_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port`` (Linux /proc/net/tcp, hex little-endian)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.fixture(scope="module")
def proxied_app(tmp_path_factory: pytest.TempPathFactory):
    """``streamlit run app/main.py`` (no address flag) behind nginx with the shipped config."""
    if not Path(NGINX).is_file():
        pytest.skip("nginx is missing (make proxy: apt-get install nginx)")
    if not shutil.which("openssl"):
        pytest.skip("openssl is missing")
    from medtl.review import ReviewStore

    tmp = tmp_path_factory.mktemp("nginx")
    home = tmp / "home"
    (home / "db").mkdir(parents=True)
    url = f"sqlite:///{home / 'db' / 'review.sqlite'}"
    with ReviewStore.open(url, hasher=cheap_hasher()) as store:
        store.accounts.add_user("alice", PASSWORD, "clinician")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["MEDTL_HOME"] = str(home)
    app_port, tls, plain = free_port(), free_port(), free_port()
    log = open(tmp / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    app = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(app_port)],
        cwd=APP_MAIN.parents[1],  # the checkout root, as the README says
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cert, key = _self_signed(tmp)
    conf = _proxy_config(tmp, tls, plain, app_port, cert, key)
    check = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    proxy = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{app_port}", timeout=90, proc=app)
        _wait_port(tls)
        yield {"app": app_port, "tls": tls, "plain": plain, "cert": cert}
    finally:
        _stop(proxy)
        _stop(app)
        log.close()


def _request(
    port: int,
    *,
    sni: str | None,
    host: str,
    cafile: Path,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> http.client.HTTPResponse:
    """One HTTPS request with its own SNI and Host header (they may differ)."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # the test chooses SNI and Host independently
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=sni)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = sock
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host)
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    return conn.getresponse()


def _websocket_headers(origin_host: str) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Protocol": "streamlit",
        "Origin": f"https://{origin_host}",
    }


def test_the_app_started_like_the_readme_listens_on_loopback_only(proxied_app) -> None:
    addresses = _listen_addresses(proxied_app["app"])
    if not addresses:
        pytest.skip("no /proc/net/tcp on this system")
    assert addresses == {"0100007F"}  # 127.0.0.1, nothing else (no 0.0.0.0, no ::)


def test_the_real_name_gets_the_app_with_security_headers(proxied_app) -> None:
    response = _request(proxied_app["tls"], sni=NAME, host=NAME, cafile=proxied_app["cert"])
    assert response.status == 200
    page = response.read().decode("utf-8", "replace")
    assert "<noscript>" in page.lower() or "streamlit" in page.lower()
    assert response.getheader("X-Frame-Options") == "DENY"
    csp = response.getheader("Content-Security-Policy") or ""
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert "max-age=" in (response.getheader("Strict-Transport-Security") or "")
    assert response.getheader("Server") == "nginx"  # no version
    health = _request(
        proxied_app["tls"], sni=NAME, host=NAME, cafile=proxied_app["cert"], path="/_stcore/health"
    )
    assert (health.status, health.read()) == (200, b"ok")


def test_the_websocket_is_upgraded_for_the_real_name(proxied_app) -> None:
    response = _request(
        proxied_app["tls"],
        sni=NAME,
        host=NAME,
        cafile=proxied_app["cert"],
        path="/_stcore/stream",
        headers=_websocket_headers(NAME),
    )
    assert response.status == 101
    assert response.getheader("Upgrade", "").lower() == "websocket"


@pytest.mark.parametrize("path", ["/", "/_stcore/health", "/_stcore/stream"])
def test_a_forged_host_is_refused(proxied_app, path) -> None:
    """DNS rebinding: the browser sends the attacker's name as Host (and Origin)."""
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _request(
            proxied_app["tls"],
            sni=NAME,
            host=FORGED,
            cafile=proxied_app["cert"],
            path=path,
            headers=_websocket_headers(FORGED) if path.endswith("stream") else None,
        ).read()


@pytest.mark.parametrize("sni", [FORGED, None])
def test_an_unknown_tls_name_gets_no_handshake(proxied_app, sni) -> None:
    with pytest.raises(ssl.SSLError):
        _request(proxied_app["tls"], sni=sni, host=FORGED, cafile=proxied_app["cert"])


def test_plain_http_redirects_the_real_name_and_drops_others(proxied_app) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxied_app["plain"], timeout=10)
    conn.request("GET", "/x", headers={"Host": NAME})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{NAME}/x"
    conn = http.client.HTTPConnection("127.0.0.1", proxied_app["plain"], timeout=10)
    conn.request("GET", "/", headers={"Host": FORGED})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()


def test_an_upload_above_the_limit_is_refused_by_the_proxy(proxied_app) -> None:
    response = _request(
        proxied_app["tls"],
        sni=NAME,
        host=NAME,
        cafile=proxied_app["cert"],
        method="PUT",
        path="/_stcore/upload_file/session/file",
        headers={"Content-Type": "application/octet-stream"},
        body=b"\0" * (2 * 1024 * 1024),  # the test config allows 1 MiB
    )
    assert response.status == 413
    assert re.search(r"413", response.read().decode("utf-8", "replace"))


@pytest.mark.browser
def test_the_app_works_in_chromium_through_the_proxy(proxied_app) -> None:
    """The proxy's CSP and headers do not break the app: sign in over TLS and WebSocket."""
    from .test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing (make browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    violations: list[str] = []
    args = [
        *CHROMIUM_ARGS,
        "--ignore-certificate-errors",  # the test's self-signed certificate
        f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
    ]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.on(
                "console",
                lambda m: (
                    violations.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            page.goto(f"https://{NAME}:{proxied_app['tls']}/")
            sign_in_browser(page, "alice", PASSWORD)
            sync_api.expect(page.get_by_role("heading", name="Upload and analyse")).to_be_visible(
                timeout=60_000
            )
        finally:
            browser.close()
    csp = [v for v in violations if "Content Security Policy" in v]
    assert csp == []
