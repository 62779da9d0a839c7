"""Configuration comes from the environment only (12-factor); see .env.example."""
import os
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


def _default_database_url() -> str:
    instance = ROOT / "instance"
    return f"sqlite:///{instance / 'mutualplan.db'}"


DEV_SECRET_KEY = "dev-only-secret-change-me"
# HubSpot refuses IP addresses in an OAuth redirect_uri; http://localhost is allowed for testing.
DEFAULT_PUBLIC_BASE_URL = "http://localhost:5000"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def _count(name: str, raw: str) -> int:
    """A small non-negative whole number from the environment, or a clear startup error."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2):
        raise ValueError(f"{name} must be a whole number from 0 to 99, not {raw!r}")
    return int(raw)


class Config:
    def __init__(self, **overrides):
        env = os.environ
        self.DATABASE_URL = env.get("DATABASE_URL") or _default_database_url()
        self.REDIS_URL = env.get("REDIS_URL") or None
        self.SECRET_KEY = env.get("SECRET_KEY") or DEV_SECRET_KEY
        self.TOKEN_ENCRYPTION_KEYS = env.get("TOKEN_ENCRYPTION_KEYS", "")
        self.PUBLIC_BASE_URL = (env.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/")
        self.HUBSPOT_CLIENT_ID = env.get("HUBSPOT_CLIENT_ID", "")
        self.HUBSPOT_CLIENT_SECRET = env.get("HUBSPOT_CLIENT_SECRET", "")
        self.HUBSPOT_APP_ID = env.get("HUBSPOT_APP_ID", "")
        # The app's developer API key: creates the timeline event templates (buyer activity).
        self.HUBSPOT_DEVELOPER_API_KEY = env.get("HUBSPOT_DEVELOPER_API_KEY", "")
        self.HUBSPOT_API_BASE = env.get("HUBSPOT_API_BASE", "https://api.hubapi.com")
        self.HUBSPOT_AUTH_BASE = env.get("HUBSPOT_AUTH_BASE", "https://app.hubspot.com")
        # Development only (`hs project dev`): also accept the signature HubSpot's local proxy
        # makes over the URL with %40 left encoded (hubspot_app/README.md). Refused at start-up
        # unless the database is SQLite and PUBLIC_BASE_URL is localhost (create_app).
        self.HUBSPOT_DEV_PROXY_SIGNING = _flag(env.get("HUBSPOT_DEV_PROXY_SIGNING"))
        self.SALESFORCE_CLIENT_ID = env.get("SALESFORCE_CLIENT_ID", "")
        self.SALESFORCE_CLIENT_SECRET = env.get("SALESFORCE_CLIENT_SECRET", "")
        self.SALESFORCE_LOGIN_URL = env.get("SALESFORCE_LOGIN_URL", "https://login.salesforce.com")
        # How many reverse proxies (load balancer, platform router) stand in front of the app;
        # their X-Forwarded-For/-Proto/-Host are trusted, nobody else's (webapp/security.py).
        self.TRUSTED_PROXIES = _count("TRUSTED_PROXIES", env.get("TRUSTED_PROXIES") or "0")
        self.CRM_CA_BUNDLE = env.get("CRM_CA_BUNDLE") or None
        self.LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
        self.LOG_FORMAT = env.get("LOG_FORMAT", "json")
        # Limits on what one request may carry; generous for humans, tight for abuse.
        self.MAX_CONTENT_LENGTH = int(env.get("MAX_CONTENT_LENGTH", 256 * 1024))
        # Rendered buyer pages kept per process (webapp/blueprints/buyer.py), in bytes.
        self.BUYER_PAGE_CACHE_BYTES = int(env.get("BUYER_PAGE_CACHE_BYTES", 32 * 1024 * 1024))
        # How long a process reuses its read of a buyer link (revoked? plan version?): a
        # change committed by another process shows within this; 0 reads on every view.
        self.BUYER_LINK_RECHECK_SECONDS = float(env.get("BUYER_LINK_RECHECK_SECONDS", 1.0))
        # "rq" with REDIS_URL, else "thread"; tests use "inline" (run right after commit).
        self.JOBS_MODE = env.get("JOBS_MODE") or None
        self.OUTBOX_DEBOUNCE = float(env.get("OUTBOX_DEBOUNCE", 1.0))
        # Requests per minute per tenant on the API (all its keys together); 0 switches it off.
        self.API_RATE_LIMIT = int(env.get("API_RATE_LIMIT", 600))
        # Rate-limit counters live under this Redis prefix: every process of one deployment
        # shares them (two deployments on one Redis need two prefixes).
        self.RATE_LIMIT_NAMESPACE = env.get("RATE_LIMIT_NAMESPACE") or "mutualplan"
        # E-mail (webapp/mail.py): smtp://user:pass@host:587 (STARTTLS) or smtps://… (TLS);
        # unset under `make run`, which starts a local catcher (/local/mail).
        self.SMTP_URL = env.get("SMTP_URL") or None
        self.MAIL_FROM = env.get("MAIL_FROM") or "MutualPlan <notifications@mutualplan.local>"
        # Slack webhooks to private/loopback addresses are refused unless this is set (dev, tests).
        self.NOTIFY_ALLOW_PRIVATE_URLS = _flag(env.get("NOTIFY_ALLOW_PRIVATE_URLS"))
        # Uploaded files: unset = a folder under instance/; s3://bucket?endpoint_url=…&region=…
        # for any S3-compatible store (webapp/storage.py documents the format).
        self.STORAGE_URL = env.get("STORAGE_URL") or None
        self.TESTING = False
        for key, value in overrides.items():
            setattr(self, key, value)

    @property
    def production(self) -> bool:
        """Anything but the embedded SQLite database counts as production."""
        return not self.DATABASE_URL.startswith("sqlite")

    @property
    def local(self) -> bool:
        """Local development: the embedded database, served to this machine only."""
        return not self.production and urlsplit(self.PUBLIC_BASE_URL).hostname in LOCAL_HOSTS

    @property
    def token_keys(self) -> list[str]:
        return [k.strip() for k in (self.TOKEN_ENCRYPTION_KEYS or "").split(",") if k.strip()]

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.isupper()}
