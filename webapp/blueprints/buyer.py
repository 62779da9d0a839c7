"""The buyer page (/p/<token>), its calendar feed and buyer actions; the share-link API.

Server-rendered, no login, readable with JavaScript off. Writes are plain
HTML forms with the POST/redirect/GET pattern, protected by a CSRF token
(HMAC of a per-browser nonce cookie and the link), an Origin /
Sec-Fetch-Site check, per-link and per-IP rate limits and input limits.
Every refusal is explained on the page itself, with the right status code.
"""
from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta
from time import monotonic
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from .. import access, content, plans, sharing, view_counter
from ..auth import api_key_required
from ..db import FastRead, database, session
from ..errors import DomainError, Invalid, NotFound, ProblemError, VersionConflict, describe
from ..schemas import (
    _EMAIL,
    ShareLinkCreated,
    ShareLinkIn,
    ShareLinkList,
    ShareLinkOut,
    ShareLinkPatch,
)
from ..web import RateLimiter, json_body, keys, render, today

bp = Blueprint("buyer", __name__)
api_bp = Blueprint("share_links_api", __name__, url_prefix="/api/v1")

BUYER_COOKIE = "mp_buyer"
NONCE_COOKIE = "mp_nonce"
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; connect-src 'self'; "
       f"frame-src {' '.join(content.VIDEO_HOSTS)}")  # the click-to-load video players only
# connect-src 'self': content.js counts a video play with a beacon to our own origin.

OK_MESSAGES = {
    "hello": "Thanks — you can now update the plan. We will remember you on this device.",
    "bye": "You are signed out of this plan on this device.",
    "done": "Marked as done. The team sees it in the plan right away.",
    "undone": "Marked as not done.",
    "comment": "Comment added.",
    "confirmed": "Date confirmed. Thank you!",
    "proposed": "Your proposed date was sent to the team; they will confirm or come back to you.",
    "uploaded": "File added. The team can see it on the milestone now.",
    "verified": "Thanks — your e-mail is confirmed. This device stays signed in to this plan for 30 days.",
}

DEFAULT_LIMITS = {"ip": (30, 600), "link": (120, 600)}  # (requests, seconds) for writes


class Refused(ProblemError):
    status, slug, title = 400, "refused", "We could not do that"


class Forbidden(Refused):
    status = 403


class TooMany(Refused):
    status = 429


# ---- headers -------------------------------------------------------------------


@bp.after_request
def _buyer_headers(response: Response) -> Response:
    h = response.headers
    h["Referrer-Policy"] = "no-referrer"
    h["X-Robots-Tag"] = "noindex, nofollow"
    h["Content-Security-Policy"] = CSP
    h["Cache-Control"] = "no-store"
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    return response


@bp.errorhandler(NotFound)
def _gone(exc):
    return render_template("buyer/gone.html"), 404


@bp.errorhandler(sharing.PlanClosed)
def _closed(exc):
    """The deal was lost: 410 Gone, a polite page, nothing of the plan."""
    return render_template("buyer/closed.html"), 410


# ---- helpers -------------------------------------------------------------------


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fmt_date(value: date | None) -> str:
    """26 Nov 2026: unambiguous for readers on both sides of the Atlantic."""
    if value is None:
        return "No date yet"
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _secure() -> bool:
    return keys().base_url.startswith("https://")


def _nonce() -> str:
    nonce = request.cookies.get(NONCE_COOKIE, "")
    if not (16 <= len(nonce) <= 64 and nonce.isalnum()):
        nonce = g.get("new_nonce") or secrets.token_hex(16)
        g.new_nonce = nonce
    return nonce


def _set_cookies(response: Response) -> Response:
    if g.get("new_nonce"):
        response.set_cookie(NONCE_COOKIE, g.new_nonce, max_age=180 * 86400, path="/p/",
                            httponly=True, samesite="Strict", secure=_secure())
    return response


def _limits() -> dict:
    return current_app.config.get("BUYER_RATE_LIMITS") or DEFAULT_LIMITS


def limiter() -> RateLimiter:
    ext = current_app.extensions
    if "mutualplan.ratelimit" not in ext:
        ext["mutualplan.ratelimit"] = RateLimiter(current_app.config.get("REDIS_URL"))
    return ext["mutualplan.ratelimit"]


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _origin_ok() -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":  # no-referrer pages send "null" on same-origin posts
        return True
    ours = {request.host_url.rstrip("/")}
    base = urlsplit(keys().base_url)
    ours.add(f"{base.scheme}://{base.netloc}")
    return origin.rstrip("/") in ours


def _web_url(value: str) -> bool:
    parts = urlsplit(value or "")
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# ---- the view model -----------------------------------------------------------


def _iso(value) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _pct(d: date, lo: date, hi: date) -> float:
    span = max((hi - lo).days, 1)
    return round(max(0.0, min(100.0, 100 * (d - lo).days / span)), 2)


def build_view(s, plan, *, include_internal: bool, day: date) -> dict:
    """Everything the buyer page (and the editor's preview parts) show, computed once."""
    stages = sharing.plan_stage_milestones(plan, include_internal)
    visible = [m for _, ms in stages for m in ms]
    visible_ids = {m.id for m in visible}
    figures = plans.derive(visible, day)
    comments: dict[str, list] = {}
    for c in sharing.comments_for(s, plan, include_internal=include_internal):
        if c.milestone_id in visible_ids:
            comments.setdefault(c.milestone_id, []).append(c)
    proposals: dict[str, list] = {}
    for p in sharing.proposals_for(s, plan):
        if p.milestone_id in visible_ids:
            proposals.setdefault(p.milestone_id, []).append(p)

    constraints = plan.constraints or {}
    go_live = None
    if constraints.get("go_live_date"):
        try:
            go_live = date.fromisoformat(constraints["go_live_date"])
        except ValueError:
            go_live = None
    dated = [m.due_date for m in visible if m.due_date]
    lo = min([d for d in [plan.start_date, *dated] if d] or [day])
    hi = max([d for d in [go_live, *dated, lo + timedelta(days=1)] if d])

    stage_views = []
    current_found = False
    for st, ms in stages:
        due = [m.due_date for m in ms if m.due_date]
        done = sum(1 for m in ms if m.status == "done")
        if ms and done == len(ms):
            state = "done"
        elif not current_found and ms:
            state, current_found = "current", True
        else:
            state = "upcoming"
        start, end = (min(due), max(due)) if due else (None, None)
        mviews = []
        for m in ms:
            overdue = plans.is_overdue(m, day)
            mps = proposals.get(m.id, [])
            mviews.append({
                "m": m, "overdue": overdue,
                "overdue_days": (day - m.due_date).days if overdue else 0,
                "due_soon": (not overdue and m.status != "done" and m.due_date is not None
                             and 0 <= (m.due_date - day).days <= 7),
                "risk": plans.effective_risk(m, day) if m.status != "done" else "on_track",
                "comments": comments.get(m.id, []),
                "pending": [p for p in mps if p.status == "pending"],
                "proposals": mps,
                "confirmed": next((p for p in reversed(mps) if p.kind == "confirm"
                                   and p.proposed_date == m.due_date), None),
                "can_complete": sharing.buyer_can_complete(m),
                "x": _pct(m.due_date, lo, hi) if m.due_date else None,
            })
        stage_views.append({
            "stage": st, "milestones": mviews, "state": state, "done": done, "total": len(ms),
            "start": start, "end": end,
            "x": _pct(start, lo, hi) if start else None,
            "w": max(_pct(end, lo, hi) - _pct(start, lo, hi), 0.8) if start else None,
        })
    people = sorted(plan.stakeholders, key=lambda p: p.position)
    resources = [r for r in (plan.resources or []) if _web_url(r.get("url", ""))]
    return {
        "plan": plan, "stages": stage_views, "figures": figures,
        "next": figures["next_milestone"],
        "today": day, "today_x": _pct(day, lo, hi), "today_in_range": lo <= day <= hi,
        "go_live": go_live, "go_live_x": _pct(go_live, lo, hi) if go_live else None,
        "range": (lo, hi),
        "buyers": [p for p in people if p.side == "buyer"],
        "sellers": [p for p in people if p.side == "seller"],
        "budget": constraints.get("budget"),
        "dates": [{"label": d.get("label", ""), "date": _iso(d.get("date"))} for d in constraints.get("dates") or []],
        "objectives": plan.objectives or {}, "resources": resources,
        "content": content.page_view(s, plan, include_internal=include_internal),
        "pending_count": sum(len(v) for v in ({k: [p for p in ps if p.status == "pending"]
                                                for k, ps in proposals.items()}).values()),
    }


CSRF_SLOT = "@@csrf-slot-7f3a@@"  # rendered into cached pages, replaced per browser
_SLOT = CSRF_SLOT.encode()
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
ENTRY_OVERHEAD = 256  # the key tuple, the dict slot and the bytes header, roughly


class PageCache:
    """Rendered buyer pages (UTF-8 bytes), per process, bounded in bytes, least recently used
    evicted first.

    A page is cached under (link, generation, variant): the generation is the plan's version
    (bumped by every change: plans.touch and the plan row's version_id_col), when the tenant's
    branding last changed (so a new logo shows in every process) and the day; the variant is
    the viewer and the notice shown. A view that hits costs a byte replace and at most one
    query (the link and its versions; none while LinkChecks remembers them). Every change makes
    a new generation, so a page is never staler than that read; caching a newer generation of
    a link drops all its older pages at once
    (an edit/view loop keeps one page per link, not one per version), and a late render of an
    older generation is not cached at all. A page larger than `max_entry` (an eighth of the
    budget) is rendered every time rather than pushing out everything else.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes, self.max_entry = max_bytes, max_bytes // 8
        self.items: OrderedDict[tuple, bytes] = OrderedDict()
        self.links: dict[str, tuple[tuple, set]] = {}  # link id -> (generation, its keys)
        self.size = 0
        self.lock = threading.Lock()

    def get(self, link_id: str, generation: tuple, variant: tuple) -> bytes | None:
        key = (link_id, generation, variant)
        with self.lock:
            page = self.items.get(key)
            if page is not None:
                self.items.move_to_end(key)
            return page

    def put(self, link_id: str, generation: tuple, variant: tuple, page: bytes) -> None:
        if len(page) + ENTRY_OVERHEAD > self.max_entry:
            return
        with self.lock:
            cached = self.links.get(link_id)
            if cached is not None and generation != cached[0]:
                if generation < cached[0]:
                    return  # rendered from an older version than one already cached
                for key in list(cached[1]):
                    self._drop(key)
            key = (link_id, generation, variant)
            if key in self.items:
                self._drop(key)
            self.items[key] = page
            self.links.setdefault(link_id, (generation, set()))[1].add(key)
            self.size += len(page) + ENTRY_OVERHEAD
            while self.size > self.max_bytes:
                self._drop(next(iter(self.items)))

    def _drop(self, key: tuple) -> None:
        self.size -= len(self.items.pop(key)) + ENTRY_OVERHEAD
        keys_of_link = self.links[key[0]][1]
        keys_of_link.discard(key)
        if not keys_of_link:
            del self.links[key[0]]

    def __len__(self) -> int:
        return len(self.items)


def page_cache() -> PageCache:
    ext = current_app.extensions
    if "mutualplan.buyer_pages" not in ext:
        budget = int(current_app.config.get("BUYER_PAGE_CACHE_BYTES") or DEFAULT_CACHE_BYTES)
        ext["mutualplan.buyer_pages"] = PageCache(budget)
    return ext["mutualplan.buyer_pages"]


def _render_page(s, link, plan, buyer, *, ok=None, error=None, error_field=None, form=None,
                 milestone_id=None) -> str:
    view = build_view(s, plan, include_internal=False, day=today())
    return render_template(
        "buyer/plan.html", v=view, buyer=buyer, token=request.view_args["token"],
        csrf=CSRF_SLOT, ok=ok, error=error, error_field=error_field,
        form=form or {}, error_milestone=milestone_id, fmt=fmt_date, link=link)


def _page(link, plan, *, status: int = 200, error: str | None = None, error_field: str | None = None,
          form: dict | None = None, milestone_id: str | None = None):
    if "access_ok" in g:
        buyer = g.access_buyer
    else:
        buyer = sharing.load_buyer(request.cookies.get(BUYER_COOKIE), keys())
    html = _render_page(session(), link, plan, buyer, error=error, error_field=error_field, form=form,
                        milestone_id=milestone_id)
    return _respond(html.encode(), link, status)


def _respond(page: bytes, link, status: int = 200):
    page = page.replace(_SLOT, sharing.csrf_token(_nonce(), link.id, keys()).encode())
    return _set_cookies(Response(page, status=status, mimetype="text/html"))


def _load(token: str):
    s = session()
    link, plan = sharing.resolve_with_plan(s, token)
    return s, link, plan


DEFAULT_RECHECK_SECONDS = 1.0
MAX_CHECKS = 10_000


class LinkChecks:
    """What the last read of a token found (its link and the versions its page depends on),
    reused for BUYER_LINK_RECHECK_SECONDS (default 1 s; 0 reads on every view).

    So a page view that reuses a rendered page costs no query at all, while the link keeps
    its guarantees: an expiry is checked on every view against the clock; a revocation, an
    edit or a new branding committed by this process drops every remembered read at once
    (an after_commit hook), and one committed by another process shows there within the
    recheck interval. Unknown, revoked and expired tokens are never remembered.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.items: dict[str, tuple[float, sharing.LinkRef, tuple]] = {}
        self.lock = threading.Lock()
        self.epoch = 0  # bumped by forget: a read begun before a commit is not remembered

    def get(self, token: str):
        found = self.items.get(token)
        if found is None or monotonic() - found[0] >= self.seconds:
            return None
        return found[1], found[2]

    def put(self, token: str, link, versions: tuple, epoch: int) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            if epoch != self.epoch:
                return
            if len(self.items) >= MAX_CHECKS:
                self.items.clear()
            self.items[token] = (monotonic(), link, versions)

    def forget(self, *_args) -> None:
        with self.lock:
            self.items.clear()
            self.epoch += 1


def link_checks() -> LinkChecks:
    ext = current_app.extensions
    if "mutualplan.link_checks" not in ext:
        checks = LinkChecks(float(current_app.config.get("BUYER_LINK_RECHECK_SECONDS",
                                                         DEFAULT_RECHECK_SECONDS)))
        event.listen(database().Session.session_factory, "after_commit", checks.forget)
        ext["mutualplan.link_checks"] = checks
    return ext["mutualplan.link_checks"]


def _checked(token: str):
    """The link of `token` and its page's versions: remembered (LinkChecks) or read."""
    checks = link_checks()
    found = checks.get(token)
    if found is not None:
        sharing.check_active(found[0])  # expired since: the clock decides, every view
        return found
    with checks.lock:
        checks.items.pop(token, None)
        epoch = checks.epoch
    link, versions = _probe(token)
    checks.put(token, link, versions, epoch)
    return link, versions


def _probe(token: str):
    """The link, its plan's version and its branding's, in one round trip (sharing.py).

    Read on a bare DBAPI cursor in autocommit (db.FastRead), outside the request's session:
    a transaction would cost a BEGIN and a ROLLBACK round trip around the one SELECT, and
    SQLAlchemy's Connection and result about as much CPU as the query's round trip
    (bench/buyer_wrk.py). When the driver raises (say, a connection the server closed),
    the link is read once more through SQLAlchemy, whose errors the app knows (503 when
    the database is gone).
    """
    ext = current_app.extensions
    if "mutualplan.link_read" not in ext:
        ext["mutualplan.link_read"] = FastRead(database(), sharing.LINK_AND_VERSION)
    fast = ext["mutualplan.link_read"]
    try:
        return sharing.resolve_version(lambda token_hash: fast.first(token_hash=token_hash), token)
    except database().engine.dialect.loaded_dbapi.Error:
        return sharing.resolve_version(_read_slowly, token)


def _read_slowly(token_hash: str):
    """Through the main pool, which pings idle connections; one used a moment ago that the
    server has closed fails its statement and is replaced: read once more."""
    for attempt in (1, 2):
        try:
            with database().engine.connect() as conn:
                return conn.execute(sharing.LINK_AND_VERSION,
                                    {"token_hash": token_hash}).one_or_none()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise


# ---- pages ---------------------------------------------------------------------------


# ---- access (webapp/access.py) ---------------------------------------------------------
# One policy for every /p/<token>/… route: the page checks it inline (it already holds the
# link from _probe); every other route of this blueprint and of content_buyer goes through
# _access_gate first. The gate's own forms (identify, forget, access_*) pass it.

GATE_ENDPOINTS = {"buyer.page", "buyer.identify", "buyer.forget", "buyer.access_form",
                  "buyer.access_code", "buyer.access_verify"}
SESSION_AGE = int(access.SESSION_TTL.total_seconds())


def _access_cookie(link) -> str:
    return f"mp_access_{link.id}"


def _granted(s, link) -> tuple[bool, sharing.Buyer | None]:
    """(may see the plan, who they are) for this browser on this link."""
    mode = link.access_mode or "open"
    if mode == "verified":
        row = access.session_for(s, link.id, request.cookies.get(_access_cookie(link)))
        return (True, sharing.Buyer(row.name or row.email, row.email)) if row else (False, None)
    buyer = sharing.load_buyer(request.cookies.get(BUYER_COOKIE), keys())
    if mode == "open":
        return True, buyer
    if buyer is None or (mode == "domain" and not access.email_allowed(link.allowed_domains, buyer.email)):
        return False, None
    return True, buyer


@bp.before_app_request
def _access_gate():
    token = (request.view_args or {}).get("token")
    if token is None or request.blueprint not in ("buyer", "content_buyer") or request.endpoint == "buyer.page":
        return None
    s = session()
    try:
        link = sharing.resolve(s, token)
    except NotFound:
        return None  # the route answers its own 404
    g.access_ok, g.access_buyer = _granted(s, link)
    if g.access_ok or request.endpoint in GATE_ENDPOINTS:
        return None
    return _gate(link, status=403, error="Open the plan first: tell us who you are below.")


def _gate(link, *, status: int = 200, step: str = "ask", error: str | None = None,
          error_field: str | None = None, form: dict | None = None, row=None):
    """The gate page: no plan data, only the company's branding and the form of the step."""
    html = render_template(
        "buyer/gate.html", tenant_id=link.tenant_id, mode=link.access_mode,
        domains=list(link.allowed_domains or []), token=request.view_args["token"], csrf=CSRF_SLOT,
        step=step, error=error, error_field=error_field, form=form or {},
        masked=access.mask(row.email) if row else "", access_id=row.id if row else "")
    return _respond(html.encode(), link, status)


def _explain(exc) -> tuple[int, str, str | None]:
    """(status, sentence, field) for a refused buyer form."""
    if isinstance(exc, ValidationError):
        return 422, "; ".join(e["msg"] for e in exc.errors()[:3]), None
    if isinstance(exc, Invalid):
        return 422, exc.message[0].upper() + exc.message[1:] + ".", exc.field
    if isinstance(exc, VersionConflict):
        return 409, "Someone changed this milestone at the same moment; please try again.", None
    return describe(exc).status, exc.detail, None


@bp.get("/p/<token>/access")
def access_form(token):
    """Step two of "verified": the code form for the request `v` (made by access_code)."""
    s = session()
    link = sharing.resolve(s, token)
    row = access.pending(s, link, request.args.get("v", ""))
    if link.access_mode != "verified" or row is None:
        return redirect(url_for("buyer.page", token=token), code=303)
    return _gate(link, step="code", row=row)


@bp.post("/p/<token>/access/code")
def access_code(token):
    s = session()
    link = sharing.resolve(s, token)
    form = {k: request.form.get(k, "")[:254] for k in ("name", "email")}
    try:
        _guard(link)
        name, email = _field("name", 100), _field("email", 254)
        if not name:
            raise Invalid("name", "tell us your name")
        if not _EMAIL.match(email):
            raise Invalid("email", "that does not look like an email address")
        if not limiter().hit(f"access-code:{_client_ip()}", 10, 600):
            raise TooMany("Too many codes asked from here in a short time. Please wait 10 minutes.")
        row = access.send_code(s, link, name, email, keys().secret)
        s.commit()
    except (ProblemError, DomainError) as exc:
        s.rollback()
        status, message, field = _explain(exc)
        return _gate(link, status=status, error=message, error_field=field, form=form)
    return redirect(url_for("buyer.access_form", token=token, v=row.id), code=303)


@bp.post("/p/<token>/access/verify")
def access_verify(token):
    s = session()
    link = sharing.resolve(s, token)
    row = access.pending(s, link, request.form.get("v", ""))
    try:
        _guard(link)
        if row is None or link.access_mode != "verified":
            raise Invalid("code", "this code is not valid any more; ask for a new one")
        cookie = access.verify(s, row, _field("code", 12), keys().secret)
        s.commit()
    except Invalid as exc:
        s.commit()  # a wrong code still counts as an attempt
        status, message, field = _explain(exc)
        spent = row is None or row.attempts >= access.CODE_ATTEMPTS
        return _gate(link, status=status, error=message, error_field=None if spent else field,
                     step="ask" if spent else "code", row=None if spent else row)
    except ProblemError as exc:
        s.rollback()
        status, message, _ = _explain(exc)
        return _gate(link, status=status, error=message, step="code" if row else "ask", row=row)
    response = redirect(url_for("buyer.page", token=token, ok="verified"), code=303)
    response.set_cookie(_access_cookie(link), cookie, max_age=SESSION_AGE, path="/p/",
                        httponly=True, samesite="Lax", secure=_secure())
    response.set_cookie(BUYER_COOKIE, sharing.dump_buyer(sharing.Buyer(row.name or row.email, row.email), keys()),
                        max_age=SESSION_AGE, path="/p/", httponly=True, samesite="Lax", secure=_secure())
    return _set_cookies(response)


@bp.get("/p/<token>")
def page(token):
    link, version = _checked(token)
    if link.access_mode == "open":
        buyer = sharing.load_buyer(request.cookies.get(BUYER_COOKIE), keys())
    else:  # a gated link: the browser must have been let in (webapp/access.py)
        s = session()
        allowed, buyer = _granted(s, link)
        s.commit()  # a verified session notes when it was last seen
        if not allowed:
            return _gate(link)
    # engagement: buffered, no database write here; the flush also sends the CRM timeline's
    # "link opened" and the `buyer.viewed` webhook (webapp/view_counter.py)
    view_counter.count_view(link, buyer)
    ok_code = request.args.get("ok", "")
    ok = OK_MESSAGES.get(ok_code)
    variant = (buyer, ok_code if ok else "")
    day = today()
    use_cache = current_app.config.get("BUYER_PAGE_CACHE", True)
    cache = page_cache()
    html = cache.get(link.id, (*version, day), variant) if use_cache else None
    if html is None:
        s = session()
        plan = sharing.load_plan_for_link(s, link)
        html = _render_page(s, link, plan, buyer, ok=ok).encode()
        if use_cache:  # under the version rendered (it may be newer than the one read above)
            cache.put(link.id, (plan.version, *version[1:], day), variant, html)
    return _respond(html, link)


def _ics_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fold(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets, continued with CRLF + space; never split UTF-8."""
    out, current, size = [], "", 0
    for ch in line:
        n = len(ch.encode())
        limit = 75 if not out else 74  # continuation lines start with a space
        if size + n > limit:
            out.append(current)
            current, size = "", 0
        current += ch
        size += n
    out.append(current)
    return "\r\n ".join(out)


def _stamp(value: datetime | None) -> str:
    value = value or datetime(2000, 1, 1, tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_text(plan, page_url: str, day: date) -> str:
    host = urlsplit(page_url).hostname or "mutualplan"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//MutualPlan//Buyer page//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH", f"X-WR-CALNAME:{_ics_text(plan.title)}"]
    for _stage, ms in sharing.plan_stage_milestones(plan, include_internal=False):
        for m in ms:
            if m.due_date is None:
                continue
            owners = ", ".join(o.get("name") or o.get("email", "") for o in (m.owners or []))
            status = {"done": "Done", "in_progress": "In progress"}.get(m.status, "Not started")
            desc = f"{status}. Owner: {m.owner_side}{' (' + owners + ')' if owners else ''}."
            if m.description:
                desc += "\n\n" + m.description
            desc += f"\n\nPlan: {page_url}"
            stamp = _stamp(m.updated_at)
            lines += [
                "BEGIN:VEVENT",
                f"UID:{m.id}@{host}",
                f"DTSTAMP:{stamp}",
                f"LAST-MODIFIED:{stamp}",
                f"SEQUENCE:{max(m.version - 1, 0)}",
                f"DTSTART;VALUE=DATE:{m.due_date:%Y%m%d}",
                f"DTEND;VALUE=DATE:{m.due_date + timedelta(days=1):%Y%m%d}",
                f"SUMMARY:{_ics_text(m.title + (' (done)' if m.status == 'done' else ''))}",
                f"DESCRIPTION:{_ics_text(desc)}",
                f"URL:{page_url}",
                "TRANSP:TRANSPARENT",
                "STATUS:CONFIRMED",
                "END:VEVENT",
            ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)


@bp.get("/p/<token>/calendar.ics")
def calendar(token):
    _, _link, plan = _load(token)
    body = calendar_text(plan, f"{keys().base_url}/p/{token}", today())
    response = Response(body.encode(), mimetype="text/calendar")
    response.headers["Content-Type"] = "text/calendar; charset=utf-8"
    response.headers["Content-Disposition"] = 'attachment; filename="plan.ics"'
    return response


# ---- buyer actions --------------------------------------------------------------------


def _guard(link) -> None:
    """Origin, rate limits and CSRF, in that order; raises Refused with a human reason."""
    if not _origin_ok():
        raise Forbidden("This form was sent from another website, so we ignored it. "
                        "Open the plan link directly and try again.")
    limits = _limits()
    rl = limiter()
    ip_limit, ip_window = limits["ip"]
    link_limit, link_window = limits["link"]
    if not rl.hit(f"ip:{_client_ip()}", ip_limit, ip_window) or \
            not rl.hit(f"link:{link.id}", link_limit, link_window):
        raise TooMany(f"Too many updates in a short time. Please wait {ip_window // 60} minutes "
                      "and try again.")
    nonce = request.cookies.get(NONCE_COOKIE)
    if not nonce:
        raise Forbidden("Your browser did not send back our cookie, so we could not check that "
                        "this update came from you. Allow cookies for this site and try again.")
    if not sharing.csrf_ok(nonce, link.id, request.form.get("csrf"), keys()):
        raise Forbidden("This page was out of date, so your update was not saved. "
                        "It has been reloaded; please try again.")


def _field(name: str, limit: int) -> str:
    value = (request.form.get(name) or "").strip()
    if len(value) > limit:
        raise Invalid(name, f"at most {limit} characters")
    return value


def _buyer_required() -> sharing.Buyer:
    if "access_ok" in g:  # _access_gate ran: a verified session names the buyer
        buyer = g.access_buyer
    else:
        buyer = sharing.load_buyer(request.cookies.get(BUYER_COOKIE), keys())
    if buyer is None:
        raise Refused("Tell us your name and email first (at the top of the page), "
                      "so the team knows who made the change.")
    return buyer


def _action(token: str, work, *, milestone_id: str | None = None):
    """Run one buyer action: guard, do, commit, redirect; or re-render with the reason."""
    s, link, plan = _load(token)
    try:
        _guard(link)
        ok, response_hook = work(s, link, plan)
        s.commit()
    except (ProblemError, DomainError, ValidationError) as exc:
        s.rollback()
        if isinstance(exc, NotFound):
            raise
        s.expire_all()
        status, message, field = _explain(exc)
        if not g.get("access_ok", True):  # the gate's own form: never the plan
            response = _gate(link, status=status, error=message, error_field=field,
                             form=request.form.to_dict())
            if status == 429:
                response.headers["Retry-After"] = str(_limits()["ip"][1])
            return response
        plan = sharing.load_plan_for_link(s, link)
        response = _page(link, plan, status=status, error=message, error_field=field,
                         form=request.form.to_dict(), milestone_id=milestone_id)
        if status == 429:
            response.headers["Retry-After"] = str(_limits()["ip"][1])
        return response
    anchor = f"#m-{milestone_id}" if milestone_id else ""
    response = redirect(url_for("buyer.page", token=token, ok=ok) + anchor, code=303)
    if response_hook:
        response_hook(response)
    return _set_cookies(response)


@bp.post("/p/<token>/identify")
def identify(token):
    def work(s, link, plan):
        name = _field("name", 100)
        email = _field("email", 254)
        if not name:
            raise Invalid("name", "tell us your name")
        if not _EMAIL.match(email):
            raise Invalid("email", "that does not look like an email address")
        if link.access_mode == "verified":
            raise Invalid("email", "this plan confirms your address with a code; use the form above")
        if link.access_mode == "domain" and not access.email_allowed(link.allowed_domains, email):
            raise Invalid("email", "this plan is shared with addresses at "
                          + ", ".join(link.allowed_domains) + " only")
        buyer = sharing.Buyer(name, email)

        def hook(response):
            response.set_cookie(BUYER_COOKIE, sharing.dump_buyer(buyer, keys()),
                                max_age=180 * 86400,
                                path="/p/", httponly=True, samesite="Lax", secure=_secure())
        return "hello", hook
    return _action(token, work)


@bp.post("/p/<token>/forget")
def forget(token):
    def work(s, link, plan):
        row = access.session_for(s, link.id, request.cookies.get(_access_cookie(link)))
        if row is not None:
            access.end_session(row)

        def hook(response):
            response.delete_cookie(BUYER_COOKIE, path="/p/")
            response.delete_cookie(_access_cookie(link), path="/p/")
        return "bye", hook
    return _action(token, work)


@bp.post("/p/<token>/m/<milestone_id>/done")
def mark_done(token, milestone_id):
    def work(s, link, plan):
        buyer = _buyer_required()
        m = sharing.visible_milestone(plan, milestone_id)
        done = request.form.get("done") == "1"
        sharing.buyer_set_done(s, plan, m, done, buyer)
        return ("done" if done else "undone"), None
    return _action(token, work, milestone_id=milestone_id)


@bp.post("/p/<token>/m/<milestone_id>/comment")
def comment(token, milestone_id):
    def work(s, link, plan):
        buyer = _buyer_required()
        m = sharing.visible_milestone(plan, milestone_id)
        body = _field("body", 2000)
        sharing.add_comment(s, plan, m, body, side="buyer", name=buyer.name, email=buyer.email,
                            actor=buyer.actor, link_id=link.id)
        return "comment", None
    return _action(token, work, milestone_id=milestone_id)


@bp.post("/p/<token>/m/<milestone_id>/date")
def date_action(token, milestone_id):
    def work(s, link, plan):
        buyer = _buyer_required()
        m = sharing.visible_milestone(plan, milestone_id)
        if request.form.get("action") == "confirm":
            sharing.confirm_date(s, plan, m, buyer, link.id)
            return "confirmed", None
        raw = _field("date", 10)
        try:
            proposed = date.fromisoformat(raw)
        except ValueError:
            raise Invalid("date", "pick a date (YYYY-MM-DD)") from None
        sharing.propose_date(s, plan, m, proposed, _field("reason", 1000), buyer, link.id, today())
        return "proposed", None
    return _action(token, work, milestone_id=milestone_id)


# ---- the share-link API ---------------------------------------------------------------


@api_bp.post("/plans/<plan_id>/share-links")
@api_key_required
def create_share_link(plan_id):
    data = json_body(ShareLinkIn) if request.get_data() else ShareLinkIn()
    s = session()
    plan = plans.get_plan(s, g.principal.tenant_id, plan_id, full=False)
    link, url = sharing.create_link(s, plan, g.principal.actor, keys(), label=data.label,
                                    expires_at=data.expires_at, access_mode=data.access_mode,
                                    allowed_domains=data.allowed_domains)
    s.commit()
    response = render(ShareLinkCreated, sharing.link_document(link, url=url), 201)
    response.headers["Cache-Control"] = "no-store"
    return response


@api_bp.get("/plans/<plan_id>/share-links")
@api_key_required
def list_share_links(plan_id):
    s = session()
    plan = plans.get_plan(s, g.principal.tenant_id, plan_id, full=False)
    links = sharing.list_links(s, plan)
    verified = access.verified_people(s, [x.id for x in links])
    return render(ShareLinkList, {"items": [sharing.link_document(x, verified=verified.get(x.id))
                                            for x in links]})


@api_bp.patch("/share-links/<link_id>")
@api_key_required
def update_share_link(link_id):
    """Change who may open a link (its access mode and allowed domains)."""
    data = json_body(ShareLinkPatch)
    s = session()
    link = sharing.get_link(s, g.principal.tenant_id, link_id)
    mode = data.access_mode if data.access_mode is not None else link.access_mode
    domains = data.allowed_domains if data.allowed_domains is not None else link.allowed_domains
    access.set_access(s, link, mode, domains, g.principal.actor)
    s.commit()
    verified = access.verified_people(s, [link.id])
    return render(ShareLinkOut, sharing.link_document(link, verified=verified.get(link.id)))


@api_bp.delete("/share-links/<link_id>")
@api_key_required
def revoke_share_link(link_id):
    s = session()
    link = sharing.get_link(s, g.principal.tenant_id, link_id)
    sharing.revoke_link(s, link, g.principal.actor)
    s.commit()
    return "", 204


__all__ = ["api_bp", "bp", "build_view", "calendar_text", "fmt_date"]
