"""E-mail: SMTP delivery (SMTP_URL, MAIL_FROM) and the local catcher behind /local/mail.

SMTP_URL forms: `smtp://user:password@host:587` (STARTTLS, required when the server is not
this machine), `smtps://user:password@host:465` (TLS from the first byte),
`smtp://127.0.0.1:1025` (a local catcher: no TLS, no auth). Credentials are never sent over
a connection without TLS unless the server is loopback.

The catcher (aiosmtpd, the `sandbox` extra) is the embedded default of `make run` and what the
tests and bench/ send to: a real SMTP server on 127.0.0.1 that keeps what it receives in memory.
"""
from __future__ import annotations

import email.policy
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote, urlsplit

from . import clock

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TIMEOUT = 20  # seconds for one SMTP conversation


class MailError(Exception):
    """permanent=True: the server refused this message for good (5xx); else retry later."""

    def __init__(self, detail: str, permanent: bool = False):
        super().__init__(detail)
        self.detail, self.permanent = detail, permanent


@dataclass(frozen=True)
class Smtp:
    scheme: str
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> Smtp:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:password@host:587 or smtps://…")
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
        return cls(parts.scheme, parts.hostname, port, unquote(parts.username or ""),
                   unquote(parts.password or ""))

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK


def message_id(key: str, domain: str) -> str:
    """The same notification always has the same Message-ID (so a receiving system that
    dedupes by it, and our own log, see one message)."""
    import hashlib

    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build(*, sender: str, to: str, subject: str, text: str, html: str, key: str,
          headers: dict | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(clock.now())  # the one clock: simulated days in bench/
    domain = sender.rsplit("@", 1)[-1].strip("> ") or "mutualplan.local"
    msg["Message-ID"] = message_id(key, domain) if key else make_msgid(domain=domain)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def send(url: str, msg: EmailMessage) -> None:
    """One SMTP conversation. Raises MailError (permanent for 5xx answers)."""
    cfg = Smtp.parse(url)
    try:
        if cfg.scheme == "smtps":
            client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=TIMEOUT,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(cfg.host, cfg.port, timeout=TIMEOUT)
        with client:
            client.ehlo()
            if cfg.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            elif cfg.scheme == "smtp" and not cfg.loopback:
                raise MailError(f"{cfg.host} does not offer STARTTLS; use smtps:// or fix the server",
                                permanent=False)
            if cfg.user:
                client.login(cfg.user, cfg.password)
            client.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500],
                        permanent=500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"recipient refused: {list(exc.recipients)}"[:500], permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}"[:500]) from None


# ---- the local catcher ----------------------------------------------------------------


class Catcher:
    """An in-process SMTP server on 127.0.0.1 keeping every message it receives."""

    def __init__(self, port: int = 0):
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        self.port = port
        self.controller = None

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        with self.received:
            self.messages.append({
                "to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                "subject": str(parsed.get("Subject", "")),
                "headers": {k: str(v) for k, v in parsed.items()},
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else ""})
            self.received.notify_all()
        return "250 Message accepted for delivery"

    def start(self) -> Catcher:
        import socket

        from aiosmtpd.controller import Controller

        if not self.port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        """Block until `count` messages arrived (for bench/ and tests: no sleeps)."""
        with self.received:
            self.received.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)
