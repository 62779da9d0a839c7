"""Requests to URLs that tenants type (Slack incoming webhooks, outgoing webhooks): the one
guard against server-side request forgery, and the one way such a request is made.

- `pin(url)` resolves the host once and checks every address it got: private, loopback,
  link-local, multicast, reserved and unspecified addresses are refused unless the caller
  allows private targets. The answer is a `Target` holding the address that was checked.
- `post(target, …)` connects to those checked addresses, never to the name: a DNS answer that
  changes between the check and the connect (DNS rebinding) cannot move the request. TLS
  still sends the host name as SNI and checks the certificate against it, and the Host header
  is the URL's. Redirects are never followed (a 3xx is the answer).

https only; plain http only to a loopback address and only with `allow_http` (local
development and tests). The resolver is `socket.getaddrinfo` unless the app config names
another (`OUTBOUND_RESOLVER`, tests: a fake DNS).
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from flask import current_app, has_app_context

Resolver = Callable[[str, int], list[str]]
MAX_URL = 500
READ_LIMIT = 64 * 1024  # of a response body: the status is what counts


class Refused(Exception):
    """The URL may not be called; `detail` says why, in words for the person who typed it."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name in the URL: SNI, certificate check, Host header
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]  # every address the name resolved to, all checked

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict
    body: bytes


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _resolver() -> Resolver:
    configured = current_app.config.get("OUTBOUND_RESOLVER") if has_app_context() else None
    return configured or system_resolver


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_unspecified or ip.is_private)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def pin(url: str, *, allow_private: bool = False, allow_http: bool = False,
        resolver: Resolver | None = None) -> Target:
    """Check `url` and resolve its host once; Refused when it may not be called."""
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise Refused(f"a URL of at most {MAX_URL} characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http"):
        raise Refused("an https:// URL")
    if parts.username or parts.password:
        raise Refused("a URL without a user name or password in it")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("a URL with a valid port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("a URL with a host name, such as https://hooks.example.com/…")
    try:
        addresses = [str(ipaddress.ip_address(host))]  # a literal address: nothing to resolve
    except ValueError:
        try:
            addresses = (resolver or _resolver())(host, port)
        except (OSError, UnicodeError):
            raise Refused("this host name does not resolve") from None
    if not addresses:
        raise Refused("this host name does not resolve")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise Refused("this URL points at a private, loopback or otherwise reserved address")
    if parts.scheme == "http" and not (allow_http and all(_is_loopback(a) for a in addresses)):
        raise Refused("an https:// URL")
    path = parts.path or "/"
    return Target(parts.scheme, host, port, path + (f"?{parts.query}" if parts.query else ""),
                  tuple(addresses))


def post(target: Target, body: bytes, headers: dict, *, timeout: tuple[float, float] = (5.0, 15.0),
         ca_bundle: str | None = None) -> Answer:
    """POST `body` to the pinned addresses, in the resolver's order: the next one only when a
    connection could not be made (e.g. an IPv6 address on a host without IPv6). Other urllib3
    errors (TLS, read timeout, reset) propagate as urllib3.exceptions.HTTPError."""
    for i, address in enumerate(target.addresses):
        try:
            return _post_to(address, target, body, headers, timeout, ca_bundle)
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError):
            if i == len(target.addresses) - 1:
                raise
    raise AssertionError("unreachable: a Target has at least one address")


def _post_to(address: str, target: Target, body: bytes, headers: dict,
             timeout: tuple[float, float], ca_bundle: str | None) -> Answer:
    kwargs = {"timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]), "retries": False,
              "maxsize": 1}
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, target.port, server_hostname=target.host, assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle or certifi.where(), **kwargs)
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, **kwargs)
    try:
        response = pool.urlopen("POST", target.path, body=body,
                                headers={**headers, "Host": target.host_header},
                                redirect=False, retries=False, preload_content=False,
                                assert_same_host=False)
        try:
            data = response.read(READ_LIMIT)
        finally:
            response.release_conn()
        return Answer(response.status, dict(response.headers), data)
    finally:
        pool.close()
