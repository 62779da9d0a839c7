"""Content blocks over HTTP: the API (/api/v1/plans/{id}/blocks), the buyer's block routes
(/p/<token>/blocks/…, milestone uploads), the rep's content page (/editor/plans/<id>/content)
and the local store's signed download URLs (/files/<token>).

Routes only: the rules live in webapp/content.py, the bytes in webapp/storage.py. Uploads
are streamed: the API takes the raw body (`PUT …/file`), read from request.stream in chunks
into a spooled temporary file; forms are multipart, which Werkzeug already spools to disk.
"""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, g, redirect, request, send_file
from pydantic import BaseModel

from .. import content, openapi, plans, storage
from ..auth import api_key_required
from ..db import session
from ..errors import Invalid, NotFound, ProblemError
from ..schemas import BlockIn, BlockList, BlockOrder, BlockOut, BlockPatch
from ..web import json_body, render

api_bp = Blueprint("content_api", __name__, url_prefix="/api/v1")
files_bp = Blueprint("content_files", __name__)

UPLOAD_SLACK = 64 * 1024  # multipart framing and form fields around the file itself


class Gone(ProblemError):
    status, slug, title = 410, "gone", "This download link has expired"


def store():
    return store_of(current_app)


def allow_upload_size() -> None:
    """Raise this request's body limit (MAX_CONTENT_LENGTH is small) to one file's size."""
    request.max_content_length = content.LIMITS["file_bytes"] + UPLOAD_SLACK


def body_chunks():
    stream = request.stream
    while chunk := stream.read(content.CHUNK):
        yield chunk


# ---- the API ----------------------------------------------------------------------------


def _plan(plan_id: str):
    return plans.get_plan(session(), g.principal.tenant_id, plan_id)


def _block(plan, block_id: str):
    block = content.get_block(session(), plan.tenant_id, block_id)
    if block.plan_id != plan.id:
        raise NotFound("No such content block.")
    return block


def _out(block, status=200):
    return render(BlockOut, content.block_document(block), status)


@api_bp.get("/plans/<plan_id>/blocks")
@api_key_required
def list_blocks(plan_id):
    plan = _plan(plan_id)
    rows = content.blocks(session(), plan, include_internal=True)
    return render(BlockList, {"items": [content.block_document(b) for b in rows]})


@api_bp.post("/plans/<plan_id>/blocks")
@api_key_required
def add_block(plan_id):
    data = json_body(BlockIn)
    s = session()
    plan = _plan(plan_id)
    block = content.add_block(s, plan, data, g.principal.actor)
    s.commit()
    response = _out(block, 201)
    response.headers["Location"] = f"/api/v1/plans/{plan_id}/blocks/{block.id}"
    return response


@api_bp.get("/plans/<plan_id>/blocks/<block_id>")
@api_key_required
def get_block(plan_id, block_id):
    return _out(_block(_plan(plan_id), block_id))


@api_bp.patch("/plans/<plan_id>/blocks/<block_id>")
@api_key_required
def update_block(plan_id, block_id):
    data = json_body(BlockPatch)
    s = session()
    plan = _plan(plan_id)
    block = content.update_block(s, plan, _block(plan, block_id), data, g.principal.actor)
    s.commit()
    return _out(block)


@api_bp.delete("/plans/<plan_id>/blocks/<block_id>")
@api_key_required
def delete_block(plan_id, block_id):
    s = session()
    plan = _plan(plan_id)
    content.delete_block(s, plan, _block(plan, block_id), g.principal.actor)
    s.commit()
    return "", 204


@api_bp.put("/plans/<plan_id>/blocks/order")
@api_key_required
def reorder_blocks(plan_id):
    data = json_body(BlockOrder)
    s = session()
    plan = _plan(plan_id)
    rows = content.reorder(s, plan, data.ids, g.principal.actor)
    s.commit()
    return render(BlockList, {"items": [content.block_document(b) for b in rows]})


@api_bp.put("/plans/<plan_id>/blocks/<block_id>/file")
@api_key_required
def put_file(plan_id, block_id):
    """The raw file as the body; its name in `?name=` (the type is read from the bytes)."""
    allow_upload_size()
    s = session()
    plan = _plan(plan_id)
    block = _block(plan, block_id)
    if request.content_length is None and "chunked" not in request.headers.get(
            "Transfer-Encoding", ""):
        raise Invalid("file", "send the file as the request body")
    name = (request.args.get("name") or "").strip()
    with content.spool(body_chunks(), content.LIMITS["file_bytes"]) as tmp:
        content.attach_file(s, plan, block, tmp, name, store(), g.principal.actor)
        s.commit()
    return _out(block)


@api_bp.get("/plans/<plan_id>/blocks/<block_id>/file")
@api_key_required
def get_file(plan_id, block_id):
    """A redirect to a signed URL valid storage.URL_TTL seconds."""
    block = _block(_plan(plan_id), block_id)
    return redirect(content.file_url(store(), block, inline=False), code=303)


class ContentEngagementRow(BaseModel):
    plan_id: str
    opened: int
    played: int
    downloaded: int
    last_at: datetime | None


class ContentEngagement(BaseModel):
    plans: list[ContentEngagementRow]


@api_bp.get("/analytics/content")
@api_key_required
def api_content_engagement():
    """Per plan, how often buyers opened, played and downloaded its content (first party)."""
    rows = content.engagement_by_plan(session(), g.principal.tenant_id)
    return render(ContentEngagement, {"plans": [
        {"plan_id": plan_id, **row} for plan_id, row in sorted(
            rows.items(), key=lambda item: item[1]["last_at"], reverse=True)]})


openapi.EXTRA_OPERATIONS.append(
    ("get", "/analytics/content", "Buyer engagement with content per plan: opens, video plays "
     "and downloads (first-party events)", None, 200, ContentEngagement))


# ---- the local store's signed URLs ----------------------------------------------------------


@files_bp.get("/files/<token>")
def local_file(token):
    st = store()
    found = st.resolve(token) if isinstance(st, storage.LocalStorage) else None
    if found is None:
        raise Gone("This download link has expired or is not valid; open the file again.")
    response = send_file(found["path"], mimetype=found["content_type"], max_age=0,
                         conditional=False)
    response.headers["Content-Disposition"] = found["disposition"]
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # A stored file is a document, never a page of ours: no scripts even if a browser sniffs.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def store_of(app):
    """The app's storage, made once (no app context needed: the commit hooks call it)."""
    ext = app.extensions
    if "mutualplan.storage" not in ext:
        ext["mutualplan.storage"] = storage.from_url(app.config.get("STORAGE_URL"),
                                                     app.config["SECRET_KEY"])
    return ext["mutualplan.storage"]


# ---- the buyer's side -----------------------------------------------------------------------

buyer_bp = Blueprint("content_buyer", __name__)


@buyer_bp.after_request
def _buyer_headers(response):
    from . import buyer

    # a thumbnail may be cached (its URL names its version); everything else is no-store
    keep = response.headers.get("Cache-Control") if response.mimetype == "image/png" else None
    response = buyer._buyer_headers(response)
    if keep:
        response.headers["Cache-Control"] = keep
    return response


def _viewer(buyer) -> str:
    return buyer.name if buyer else "Someone"


def _buyer_block(token: str, block_id: str):
    """The link, the plan and a block the buyer may see (else 404, as for a wrong link)."""
    from .. import sharing

    s = session()
    link, plan = sharing.resolve_with_plan(s, token)
    block = content.get_block(s, plan.tenant_id, block_id)
    visible = {b.id for b in content.blocks(s, plan, include_internal=False)}
    if block.plan_id != plan.id or block.id not in visible:
        raise NotFound("No such content block.")
    return s, link, plan, block


@buyer_bp.get("/p/<token>/blocks/<block_id>/open")
def buyer_open(token, block_id):
    """Open a block: counts it (first party), then sends the browser on — to the page
    linked, the video's own page (JavaScript off), or a signed URL of the file."""
    from .. import sharing
    from ..web import keys

    s, _link, _plan, block = _buyer_block(token, block_id)
    buyer = sharing.load_buyer(request.cookies.get("mp_buyer"), keys())
    if block.kind in ("deck", "file"):
        kind = "opened" if block.kind == "deck" else "downloaded"
        target = content.file_url(store(), block, inline=block.kind == "deck")
    elif block.kind in ("link", "video"):
        kind, target = "opened", block.url
    else:
        raise NotFound("Notes are on the plan page itself.")
    content.record_event(s, block, kind, _viewer(buyer))
    s.commit()
    return redirect(target, code=303)


def thumbnail_response(block):
    """A deck's thumbnail, read from the storage and sent from our own origin: the buyer page's
    CSP stays `img-src 'self'` and no request leaves for the storage's host. The URL carries
    the thumbnail's key (?v=), so a browser may keep it a day without ever showing a stale one."""
    try:
        data = content.read_thumbnail(store(), block)
    except FileNotFoundError:
        raise NotFound("This block has no thumbnail.") from None
    response = current_app.response_class(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@buyer_bp.get("/p/<token>/blocks/<block_id>/thumb")
def buyer_thumb(token, block_id):
    _s, _link, _plan, block = _buyer_block(token, block_id)
    return thumbnail_response(block)


@buyer_bp.post("/p/<token>/blocks/<block_id>/played")
def buyer_played(token, block_id):
    """The buyer clicked a video's placeholder (sent by content.js with navigator.sendBeacon)."""
    from .. import sharing
    from ..web import keys
    from .buyer import NONCE_COOKIE, _origin_ok

    s, link, _plan, block = _buyer_block(token, block_id)
    if block.kind != "video" or not _origin_ok() or not sharing.csrf_ok(
            request.cookies.get(NONCE_COOKIE), link.id, request.form.get("csrf"), keys()):
        return "", 204  # a beacon has nobody to tell; nothing is recorded
    buyer = sharing.load_buyer(request.cookies.get("mp_buyer"), keys())
    content.record_event(s, block, "played", _viewer(buyer))
    s.commit()
    return "", 204


@buyer_bp.post("/p/<token>/m/<milestone_id>/upload")
def buyer_upload(token, milestone_id):
    """A buyer adds a file to a milestone their side owns (e.g. a signed questionnaire)."""
    from .. import sharing
    from ..schemas import BlockIn
    from . import buyer as page

    allow_upload_size()

    def work(s, link, plan):
        who = page._buyer_required()
        m = sharing.visible_milestone(plan, milestone_id)
        if m.owner_side not in ("buyer", "both"):
            raise Invalid("file", "files can be added to your side's milestones only")
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise Invalid("file", "choose a file to upload")
        title = page._field("title", 200) or upload.filename[:200]
        with content.spool(iter(lambda: upload.stream.read(content.CHUNK), b""),
                           content.LIMITS["file_bytes"]) as tmp:
            content.sniff(tmp)  # refuse a wrong type before a block exists
            block = content.add_block(s, plan, BlockIn(kind="file", title=title,
                                                       milestone_id=m.id), who.actor, side="buyer")
            content.attach_file(s, plan, block, tmp, upload.filename, store(), who.actor)
        return "uploaded", None
    return page._action(token, work, milestone_id=milestone_id)


# ---- the rep's content page -------------------------------------------------------------------

editor_bp = Blueprint("content_editor", __name__, url_prefix="/editor")

EDITOR_MESSAGES = {
    "added": "Block added.", "saved": "Block saved.", "moved": "Order saved.",
    "deleted": "Block deleted.", "file": "File stored.",
}


@editor_bp.after_request
def _editor_headers(response):
    from . import editor

    return editor._editor_headers(response)


@editor_bp.errorhandler(NotFound)
def _closed(exc):
    from flask import render_template

    from ..errors import describe

    return render_template("editor/closed.html", detail=exc.detail), describe(exc).status


def _editor_page(ed: dict, *, status=200, error=None, ok=None):
    from flask import Response, render_template

    from .. import sharing
    from ..web import keys

    s = session()
    plan = plans.get_plan(s, ed["t"], ed["p"])
    rows = content.blocks(s, plan, include_internal=True)
    titles = {m.id: m.title for m in plan.milestones}
    html = render_template(
        "content/editor.html", plan=plan, blocks=rows, titles=titles, error=error, ok=ok,
        milestones=list(plan.milestones), engagement=content.engagement(s, plan),
        csrf=sharing.csrf_token(ed["n"], plan.id, keys()), limits=content.LIMITS,
        notes={b.id: content.render_notes(b.body) for b in rows if b.kind == "notes"})
    return Response(html, status=status, mimetype="text/html")


def _session(plan_id):
    from ..errors import Unauthorized
    from . import editor

    try:
        return editor._session_for(plan_id)
    except Unauthorized as exc:
        from flask import render_template

        from ..errors import describe

        raise _Closed(render_template("editor/closed.html", detail=exc.detail),
                      describe(exc).status) from None


class _Closed(Exception):
    def __init__(self, html, status):
        super().__init__("closed")
        self.html, self.status = html, status


@editor_bp.errorhandler(_Closed)
def _closed_page(exc):
    return exc.html, exc.status


@editor_bp.get("/plans/<plan_id>/content")
def editor_page(plan_id):
    ed = _session(plan_id)
    return _editor_page(ed, ok=EDITOR_MESSAGES.get(request.args.get("ok", "")))


@editor_bp.get("/plans/<plan_id>/content/<block_id>/file")
def editor_file(plan_id, block_id):
    ed = _session(plan_id)
    s = session()
    block = content.get_block(s, ed["t"], block_id)
    if block.plan_id != plan_id:
        raise NotFound("No such content block.")
    return redirect(content.file_url(store(), block, inline=block.kind == "deck"), code=303)


@editor_bp.get("/plans/<plan_id>/content/<block_id>/thumb")
def editor_thumb(plan_id, block_id):
    ed = _session(plan_id)
    block = content.get_block(session(), ed["t"], block_id)
    if block.plan_id != plan_id:
        raise NotFound("No such content block.")
    return thumbnail_response(block)


def _checkbox(name: str) -> bool:
    return request.form.get(name) in ("1", "on", "yes")


def op_add(s, plan, actor):
    from ..schemas import BlockIn

    kind = request.form.get("kind", "")
    data = BlockIn.model_validate({
        "kind": kind, "title": (request.form.get("title") or "").strip(),
        "url": (request.form.get("url") or "").strip() or None,
        "body": request.form.get("body") or "", "internal": _checkbox("internal"),
        "milestone_id": request.form.get("milestone_id") or None})
    upload = request.files.get("file")
    if kind in ("deck", "file") and (upload is None or not upload.filename):
        raise Invalid("file", f"a {kind} needs a file")
    block = content.add_block(s, plan, data, actor)
    if kind in ("deck", "file"):
        _store_upload(s, plan, block, upload, actor)
    return "added"


def _store_upload(s, plan, block, upload, actor):
    with content.spool(iter(lambda: upload.stream.read(content.CHUNK), b""),
                       content.LIMITS["file_bytes"]) as tmp:
        content.attach_file(s, plan, block, tmp, upload.filename, store(), actor)


def _form_block(s, plan):
    block = content.get_block(s, plan.tenant_id, request.form.get("block_id", ""))
    if block.plan_id != plan.id:
        raise NotFound("No such content block.")
    return block


def op_internal(s, plan, actor):
    from ..schemas import BlockPatch

    content.update_block(s, plan, _form_block(s, plan),
                         BlockPatch(internal=_checkbox("internal")), actor)
    return "saved"


def op_move(s, plan, actor):
    block = _form_block(s, plan)
    ids = [b.id for b in content.blocks(s, plan, include_internal=True)]
    i = ids.index(block.id)
    j = max(0, min(len(ids) - 1, i + (-1 if request.form.get("dir") == "up" else 1)))
    ids[i], ids[j] = ids[j], ids[i]
    content.reorder(s, plan, ids, actor)
    return "moved"


def op_replace(s, plan, actor):
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid("file", "choose a file")
    _store_upload(s, plan, _form_block(s, plan), upload, actor)
    return "file"


def op_delete(s, plan, actor):
    content.delete_block(s, plan, _form_block(s, plan), actor)
    return "deleted"


OPS = {"add": op_add, "internal": op_internal, "move": op_move, "replace": op_replace,
       "delete": op_delete}


@editor_bp.post("/plans/<plan_id>/content/do")
def editor_do(plan_id):
    from pydantic import ValidationError

    from .. import sharing
    from ..errors import DomainError, describe
    from ..web import keys
    from . import editor

    allow_upload_size()
    ed = _session(plan_id)
    if not editor._origin_ok():
        return _editor_page(ed, status=403, error="This form came from another website.")
    if not sharing.csrf_ok(ed["n"], plan_id, request.form.get("csrf"), keys()):
        return _editor_page(ed, status=403, error="This page was out of date; please try again.")
    handler = OPS.get(request.form.get("op", ""))
    if handler is None:
        return _editor_page(ed, status=400, error="Unknown action.")
    s = session()
    try:
        plan = plans.get_plan(s, ed["t"], plan_id)
        code = handler(s, plan, ed["a"])
        s.commit()
    except (ProblemError, DomainError, ValidationError) as exc:
        s.rollback()
        s.expire_all()
        if isinstance(exc, ValidationError):
            message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                                for e in exc.errors(include_url=False)[:3])
            status = 422
        else:
            status, message = describe(exc).status, exc.detail
        return _editor_page(ed, status=status, error=message)
    return redirect(f"/editor/plans/{plan_id}/content?ok={code}", code=303)


@buyer_bp.app_template_global()
def provider_name(embed_url: str) -> str:
    return content.provider_name(embed_url)


@buyer_bp.app_template_global()
def content_engagement(plan) -> list[str]:
    """"Dana opened the security deck twice", for the rep's editor (webapp/content.py)."""
    return content.engagement(session(), plan)


@buyer_bp.app_template_global()
def public_url(path: str) -> str:
    """An absolute URL of ours, for the print view's list of links."""
    from ..web import keys

    return keys().base_url.rstrip("/") + path


@buyer_bp.app_template_global()
def size_text(size: int) -> str:
    return content.size_text(size)
