"""The client key of sign-in throttling: the address behind a trusted proxy only, keyed."""

from __future__ import annotations

import sqlite3

from app.components.client import UNVERIFIED, client_address

from .helpers import new_app, sign_in


def _headers(**values: list[str]):
    table = {k.lower().replace("_", "-"): v for k, v in values.items()}
    return lambda name: table.get(name.lower(), [])


def test_forwarded_headers_are_not_believed_without_a_trusted_proxy() -> None:
    spoofed = _headers(x_forwarded_for=["10.9.9.9"], x_real_ip=["10.8.8.8"])
    assert client_address("203.0.113.7", spoofed, ()) == "203.0.113.7"
    assert client_address(None, spoofed, ()) == "127.0.0.1"  # loopback, no proxy named
    assert client_address("203.0.113.7", spoofed, ("127.0.0.1",)) == "203.0.113.7"
    # Streamlit's server (uvicorn) took the peer from the header of a loopback connection:
    # each made-up address must not become a fresh client.
    assert client_address("10.9.9.9", spoofed, ()) == UNVERIFIED
    other = _headers(x_forwarded_for=["10.7.7.7"])
    assert client_address("10.7.7.7", other, ()) == UNVERIFIED


def test_the_proxy_reported_address_is_used_behind_a_trusted_proxy() -> None:
    proxies = ("127.0.0.1", "10.0.0.0/8")
    # The browser wrote "198.51.100.1" itself; nginx appended the address it saw.
    chain = _headers(x_forwarded_for=["198.51.100.1, 203.0.113.7", "10.1.2.3"])
    assert client_address(None, chain, proxies) == "203.0.113.7"
    assert client_address("10.0.0.5", chain, proxies) == "203.0.113.7"
    assert client_address(None, _headers(x_real_ip=["2001:db8::1"]), proxies) == "2001:db8::1"
    assert client_address(None, _headers(x_forwarded_for=["junk, 10.1.1.1"]), proxies) == (
        "127.0.0.1"
    )
    assert client_address(None, _headers(), proxies) == "127.0.0.1"
    # nginx at 127.0.0.1 and uvicorn agree: the peer came from the trusted chain.
    nginx = _headers(x_forwarded_for=["198.51.100.1, 203.0.113.7"])
    assert client_address("203.0.113.7", nginx, ("127.0.0.1",)) == "203.0.113.7"


def test_the_app_passes_a_keyed_client_to_the_store(app_home) -> None:
    at = new_app().run()
    sign_in(at, "alice", "not the password")
    with sqlite3.connect(app_home / "db" / "review.sqlite") as db:
        [(client_hash,)] = db.execute("SELECT client_hash FROM login_failures").fetchall()
    assert client_hash is not None and len(client_hash) == 64
    # The same client (this process, loopback) gets the same key on the next attempt.
    sign_in(at, "alice", "not the password either")
    with sqlite3.connect(app_home / "db" / "review.sqlite") as db:
        hashes = {h for (h,) in db.execute("SELECT client_hash FROM login_failures")}
    assert hashes == {client_hash}
