"""A tenant's branding on the buyer page: company name, accent colour, the contact card.

The contact card on a plan's buyer page is its owner's own (each rep edits theirs at
/app/profile, a `contact_cards` row), else the tenant's card from these settings.

The accent colour is refused unless white text on it, and it as text on white, reach
WCAG 2.x AA contrast (4.5:1) — the buyer page uses it both ways (buttons, links). It
reaches the page as a tiny stylesheet of the tenant's own (`/brand/<tenant>/<version>.css`,
cacheable for a year since the version changes with the branding), because the buyer
page's CSP allows no inline styles.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET

from flask import Blueprint, Response, abort, g
from sqlalchemy.orm import Session

from . import clock
from .db import session
from .domain_errors import Invalid
from .models import Branding, ContactCard, Plan, User

AA = 4.5
MAX_IMAGE = 200 * 1024  # bytes, for the logo and the contact's photo
IMAGES = ("logo", "photo")
EXT = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
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


def image_type(data: bytes) -> str:
    """The media type of an uploaded image by its content (never its name or the browser's
    claim): PNG, JPEG, or an SVG that is plain drawing. Refusals are ValueErrors in plain words."""
    if len(data) > MAX_IMAGE:
        raise ValueError(f"at most {MAX_IMAGE // 1024} KB; this file is {len(data) // 1024} KB")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<") and b"<svg" in data[:2048].lower():
        check_svg(data)
        return "image/svg+xml"
    raise ValueError("a PNG, JPEG or SVG image")


def check_svg(data: bytes) -> None:
    """Refuse, rather than clean, an SVG with scripts, event handlers, external references,
    embedded HTML or a DOCTYPE (entities): a logo needs none of them."""
    text = data.decode("utf-8", "replace")
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise ValueError("an SVG without a DOCTYPE or entities")
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        raise ValueError("a well-formed SVG file") from None
    if root.tag.rsplit("}", 1)[-1] != "svg":
        raise ValueError("an SVG image (the file's root is not <svg>)")
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1].lower()
        if tag in ("script", "foreignobject", "iframe", "embed", "object", "use", "image"):
            raise ValueError(f"an SVG without <{tag}> elements (scripts and external content are refused)")
        for name, value in el.attrib.items():
            local = name.rsplit("}", 1)[-1].lower()
            if local.startswith("on"):
                raise ValueError(f"an SVG without event handlers ({local})")
            if local == "href" and not value.strip().startswith("#"):
                raise ValueError("an SVG without links to other files")
            if "url(" in value.replace(" ", "").lower() and "url(#" not in value.replace(" ", "").lower():
                raise ValueError("an SVG without references to other files")
        if tag == "style" and re.search(r"@import|url\((?!\s*#)", el.text or "", re.IGNORECASE):
            raise ValueError("an SVG without references to other files")


def get(s: Session, tenant_id: str) -> Branding | None:
    return s.get(Branding, tenant_id)


def save(s: Session, tenant_id: str, form: dict, files: dict | None = None) -> Branding:
    """Validate everything first, then write: a refusal (Invalid) stores nothing.
    `files` maps "logo"/"photo" to uploaded bytes (absent: keep; `remove_<name>`: drop)."""
    uploads = {}
    for name, data in (files or {}).items():
        if data:
            try:
                uploads[name] = (data, image_type(data))
            except ValueError as exc:
                raise Invalid(name, str(exc)) from None
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
    for name in IMAGES:
        if name in uploads:
            setattr(row, name, uploads[name][0])
            setattr(row, f"{name}_type", uploads[name][1])
        elif form.get(f"remove_{name}") == "1":
            setattr(row, name, None)
            setattr(row, f"{name}_type", None)
    row.updated_at = clock.now()
    s.flush()
    return row


def version(row: Branding) -> str:
    return hashlib.sha256(f"{row.accent}|{row.updated_at}".encode()).hexdigest()[:12]


def for_page(tenant_id: str) -> dict | None:
    """What the buyer page shows (a Jinja global: the buyer blueprint stays as it is); one
    query per rendered page, none when the buyer page cache serves it (whose key holds the
    branding's updated_at: blueprints/buyer.py)."""
    memo = g.setdefault("branding", {})
    if tenant_id not in memo:
        row = get(session(), tenant_id)
        memo[tenant_id] = row and {
            "row": row, "css": f"/brand/{tenant_id}/{version(row)}.css" if row.accent else None,
            **{name: image_url(row, name) for name in IMAGES}}
    return memo[tenant_id]


def image_url(row: Branding, name: str) -> str | None:
    kind = getattr(row, f"{name}_type")
    return f"/brand/{row.tenant_id}/{name}-{version(row)}.{EXT[kind]}" if kind else None


@bp.get("/brand/<tenant_id>/<name>-<ver>.<ext>")
def image(tenant_id, name, ver, ext):
    row = get(session(), tenant_id)
    if name not in IMAGES or row is None or ver != version(row) or image_url(row, name) is None \
            or not image_url(row, name).endswith(f".{ext}"):
        abort(404)
    response = Response(getattr(row, name), mimetype=getattr(row, f"{name}_type"))
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/brand/<tenant_id>/<ver>.css")
def stylesheet(tenant_id, ver):
    row = get(session(), tenant_id)
    if row is None or not row.accent or ver != version(row):
        abort(404)
    css = f":root {{ --brand: {row.accent}; }}\n"
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


# ---- each rep's own contact card -----------------------------------------------------------

CARD_FIELDS = {"name": 200, "title": 200, "email": 254}


def get_card(s: Session, user_id: str) -> ContactCard | None:
    return s.get(ContactCard, user_id)


def save_card(s: Session, user: User, form: dict, photo: bytes | None = None) -> ContactCard:
    """The rep's card from their profile form; validated first, a refusal (Invalid) stores
    nothing. An empty name means "use the team's card" (the tenant's, from branding)."""
    values = {k: (form.get(k) or "").strip() for k in CARD_FIELDS}
    for name, limit in CARD_FIELDS.items():
        if len(values[name]) > limit:
            raise Invalid(name, f"at most {limit} characters")
    if values["email"] and not EMAIL.match(values["email"]):
        raise Invalid("email", "an email address like dana@example.com")
    kind = None
    if photo:
        try:
            kind = image_type(photo)
        except ValueError as exc:
            raise Invalid("photo", str(exc)) from None
    row = s.get(ContactCard, user.id) or ContactCard(user_id=user.id, tenant_id=user.tenant_id)
    s.add(row)
    for name in CARD_FIELDS:
        setattr(row, name, values[name])
    if kind:
        row.photo, row.photo_type = photo, kind
    elif form.get("remove_photo") == "1":
        row.photo, row.photo_type = None, None
    row.updated_at = clock.now()
    s.flush()
    return row


def card_photo_url(row: ContactCard) -> str | None:
    if not row.photo_type:
        return None
    ver = hashlib.sha256(f"{row.user_id}|{row.updated_at}".encode()).hexdigest()[:12]
    return f"/brand/{row.tenant_id}/people/{row.user_id}-{ver}.{EXT[row.photo_type]}"


def contact_for(plan: Plan) -> dict | None:
    """The card the buyer page shows (a Jinja global): the plan owner's own card when they
    filled one in, else the tenant's; None when neither has a name."""
    brand = for_page(plan.tenant_id)
    company = brand["row"].company_name if brand else ""
    row = plan.owner_user_id and get_card(session(), plan.owner_user_id)
    if row and row.name and row.tenant_id == plan.tenant_id:
        return {"name": row.name, "title": row.title, "email": row.email, "company": company,
                "photo": card_photo_url(row), "own": True}
    if brand and brand["row"].contact_name:
        b = brand["row"]
        return {"name": b.contact_name, "title": b.contact_title, "email": b.contact_email,
                "company": company, "photo": brand["photo"], "own": False}
    return None


@bp.get("/brand/<tenant_id>/people/<user_id>-<ver>.<ext>")
def person_photo(tenant_id, user_id, ver, ext):
    row = get_card(session(), user_id)
    url = row and row.tenant_id == tenant_id and card_photo_url(row)
    if not url or url != f"/brand/{tenant_id}/people/{user_id}-{ver}.{ext}":
        abort(404)
    response = Response(row.photo, mimetype=row.photo_type)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def init_app(app) -> None:
    app.jinja_env.globals["branding_for"] = for_page
    app.jinja_env.globals["contact_for"] = contact_for
    app.register_blueprint(bp)
