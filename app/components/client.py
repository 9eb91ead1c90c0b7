"""Who is signing in: the browser's network address, as a keyed pseudonym.

The review store throttles failed sign-ins per client and account
(:mod:`medtl.review.throttle`), so one place guessing a password cannot lock the user out
at another. The client is the address the connection comes from. Behind a reverse proxy
every connection comes from the proxy; then, and only when the proxy is named in the
``trusted_proxies`` setting, the address the proxy reports is used: the right-most entry of
``X-Forwarded-For`` that is not itself a trusted proxy (entries to its left are whatever the
browser sent), else ``X-Real-IP``. Without a trusted proxy these headers are not believed:
any browser can send them (see :func:`client_address` for Streamlit's own handling).

The key handed to the store is an HMAC of the address under a key derived from the site
secret (``MEDTL_HOME/secrets/deid.key``): the store never sees an address, and its digest
cannot be reversed by trying every IPv4 address without the site secret.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Sequence

import streamlit as st

from app.components import session

_LOOPBACK = "127.0.0.1"
#: The client of forwarded requests whose forwarding medtl cannot verify.
UNVERIFIED = "unverified-forwarded"
_KEY_INFO = b"medtl app sign-in client v1"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _is_trusted(address: str, trusted: Sequence[str]) -> bool:
    ip = _address(address)
    if ip is None:
        return False
    for net in trusted:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def _forwarded(get_all: Callable[[str], list[str]]) -> list[str]:
    return [
        part.strip()
        for value in get_all("X-Forwarded-For")
        for part in value.split(",")
        if part.strip()
    ]


def _through_proxies(forwarded: list[str], trusted: Sequence[str]) -> str | None:
    """The right-most hop of ``X-Forwarded-For`` that is not a trusted proxy."""
    for hop in reversed(forwarded):
        ip = _address(hop)
        if ip is None:
            return None  # a malformed entry: nothing left of it can be trusted
        if not _is_trusted(hop, trusted):
            return str(ip)
    return None


def client_address(
    peer: str | None, get_all: Callable[[str], list[str]], trusted: Sequence[str]
) -> str:
    """The client's address as far as this server can trust it.

    Streamlit's server (uvicorn) already replaces the peer by the ``X-Forwarded-For``
    address when the connection comes from 127.0.0.1 (its ``FORWARDED_ALLOW_IPS``
    default), so when the request carries that header the peer alone proves nothing: it
    counts only when it did not come from the header, or when the chain of proxies medtl
    trusts leads to it. Otherwise every such request shares one bucket
    (:data:`UNVERIFIED`), so a browser cannot pick a fresh client for each guess.

    Args:
        peer: the connection's address as the server reports it (``None``: loopback).
        get_all: the values of a request header (all occurrences, in order).
        trusted: addresses or networks of trusted reverse proxies.

    Returns:
        An address, or :data:`UNVERIFIED`.
    """
    peer = str(_address(peer)) if peer and _address(peer) else _LOOPBACK
    forwarded = _forwarded(get_all)
    real = [v.strip() for v in get_all("X-Real-IP") if v.strip()]
    resolved = _through_proxies(forwarded, trusted) if trusted else None
    if _is_trusted(peer, trusted):
        if resolved is None and real and _address(real[-1]) is not None:
            resolved = str(_address(real[-1]))
        return resolved or peer
    if not forwarded or peer not in {str(_address(h)) for h in forwarded if _address(h)}:
        return peer  # the real connection: the server did not take it from the header
    return peer if resolved == peer else UNVERIFIED


@st.cache_resource(show_spinner=False)
def _key(home: str) -> bytes:
    from medtl.io.deid import load_key

    del home  # cache key only
    return hmac.new(load_key(), _KEY_INFO, hashlib.sha256).digest()


def client_key() -> str:
    """The pseudonymous key of this browser's client address (for ``sign_in(client=)``)."""
    from medtl.paths import medtl_home

    peer = st.context.ip_address
    if not isinstance(peer, str):  # no browser connection (AppTest): this machine
        peer = None
    headers = st.context.headers
    address = client_address(peer, headers.get_all, session.settings().trusted_proxies)
    digest = hmac.new(_key(str(medtl_home())), address.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()
