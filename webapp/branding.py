"""A tenant's branding on the buyer page: company name, accent colour, the rep's contact card.

The accent colour is refused unless white text on it, and it as text on white, reach
WCAG 2.x AA contrast (4.5:1) — the buyer page uses it both ways (buttons, links). It
reaches the page as a tiny stylesheet of the tenant's own (`/brand/<tenant>/<version>.css`,
cacheable for a year since the version changes with the branding), because the buyer
page's CSP allows no inline styles.
"""
from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, abort, g
from sqlalchemy.orm import Session

from . import clock
from .db import session
from .domain_errors import Invalid
from .models import Branding

AA = 4.5
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FIELDS = {"company_name": 120, "contact_name": 200, "contact_title": 200, "contact_email": 254}

bp = Blueprint("branding", __name__)


def luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour like #1d4ed8."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def get(s: Session, tenant_id: str) -> Branding | None:
    return s.get(Branding, tenant_id)


def save(s: Session, tenant_id: str, form: dict) -> Branding:
    """Validate everything first, then write: a refusal (Invalid) stores nothing."""
    values = {k: (form.get(k) or "").strip() for k in (*FIELDS, "accent")}
    for name, limit in FIELDS.items():
        if len(values[name]) > limit:
            raise Invalid(name, f"at most {limit} characters")
    accent = values["accent"].lower()
    if accent:
        if not HEX.match(accent):
            raise Invalid("accent", "a colour like #1d4ed8")
        ratio = contrast(accent, "#ffffff")
        if ratio < AA:
            raise Invalid("accent", f"white text on this colour has a contrast of {ratio:.2f}:1; "
                                    f"buyers need at least {AA}:1 (WCAG AA). Pick a darker shade.")
    if values["contact_email"] and not EMAIL.match(values["contact_email"]):
        raise Invalid("contact_email", "an email address like dana@example.com")
    row = s.get(Branding, tenant_id) or Branding(tenant_id=tenant_id)
    s.add(row)
    for name in FIELDS:
        setattr(row, name, values[name])
    row.accent = accent or None
    row.updated_at = clock.now()
    s.flush()
    return row


def version(row: Branding) -> str:
    return hashlib.sha256(f"{row.accent}|{row.updated_at}".encode()).hexdigest()[:12]


def for_page(tenant_id: str) -> dict | None:
    """What the buyer page shows (a Jinja global: the buyer blueprint stays as it is); one
    query per rendered page, none when the buyer page cache serves it."""
    memo = g.setdefault("branding", {})
    if tenant_id not in memo:
        row = get(session(), tenant_id)
        memo[tenant_id] = row and {"row": row, "css": f"/brand/{tenant_id}/{version(row)}.css"
                                   if row.accent else None}
    return memo[tenant_id]


def forget_rendered_pages() -> None:
    """Rendered buyer pages are cached by plan version (blueprints/buyer.py), which branding
    does not change: drop this process's copies so the new branding shows at once."""
    from .blueprints.buyer import page_cache
    cache = page_cache()
    with cache.lock:
        cache.items.clear()


@bp.get("/brand/<tenant_id>/<ver>.css")
def stylesheet(tenant_id, ver):
    row = get(session(), tenant_id)
    if row is None or not row.accent or ver != version(row):
        abort(404)
    css = f":root {{ --brand: {row.accent}; }}\n"
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def init_app(app) -> None:
    app.jinja_env.globals["branding_for"] = for_page
    app.register_blueprint(bp)
