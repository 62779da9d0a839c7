"""Content blocks on a plan: links, embedded videos, PDF decks, meeting notes, files.

CRM-neutral domain, like plans.py: commands take a session and a plan, raise domain errors,
and record the change with plans.touch (a new plan version, so a cached buyer page is never
stale). Files go through webapp/storage.py; their bytes are checked by content (magic
numbers), never by name. The plan's older `resources` stay its plain list of links (the
API's PlanOut keeps them); link blocks are the ordered, internal-able form of the same thing.
"""
from __future__ import annotations

import io
import logging
import re
import struct
import tempfile
import threading
import zipfile
import zlib
from collections import Counter
from typing import BinaryIO
from urllib.parse import parse_qs, urlencode, urlsplit

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from . import clock, plans
from .domain_errors import Invalid, LimitReached, NotFound
from .models import ContentBlock, ContentEvent, Plan

LIMITS = {
    "blocks_per_plan": 50,
    "files_per_plan": 30,
    "file_bytes": 25 * 1024 * 1024,  # one file
    "tenant_bytes": 2 * 1024 * 1024 * 1024,  # all files of a tenant
    "tenant_files": 10_000,  # files of a tenant, all plans together
}
CHUNK = 1024 * 1024
SPOOL = 1024 * 1024  # bytes kept in memory before the upload spills to a temporary file
log = logging.getLogger("mutualplan.content")

# ---- videos ------------------------------------------------------------------------------
# Each provider's privacy-enhanced player, built from the id in a pasted share URL:
# - YouTube: "privacy-enhanced mode" serves the player from www.youtube-nocookie.com/embed/ID
#   (YouTube Help, "Embed videos & playlists", support.google.com/youtube/answer/171780).
# - Vimeo: player.vimeo.com/video/ID with dnt=1, which stops the player tracking the session
#   (Vimeo oEmbed / player parameters, developer.vimeo.com/api/oembed/videos; amp-vimeo docs).
#   An unlisted video's share URL carries a hash (vimeo.com/ID/HASH), passed on as h=HASH.
# - Loom: www.loom.com/embed/ID from www.loom.com/share/ID (Loom's embed docs, dev.loom.com).
# - Wistia: the iframe ("fallback") embed fast.wistia.net/embed/iframe/ID, from a media URL
#   (docs.wistia.com/docs/construct-a-wistia-embed-code), with doNotTrack=true
#   (docs.wistia.com/docs/embed-options-and-plugins).

VIDEO_HOSTS = ("https://www.youtube-nocookie.com", "https://player.vimeo.com",
               "https://www.loom.com", "https://fast.wistia.net")
_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


def _youtube(host: str, path: str, query: dict) -> str | None:
    if host == "youtu.be":
        vid = path.strip("/").split("/")[0]
    elif host.endswith(("youtube.com", "youtube-nocookie.com")):
        parts = path.strip("/").split("/")
        if parts[0] == "watch":
            vid = (query.get("v") or [""])[0]
        elif parts[0] in ("embed", "shorts", "live", "v") and len(parts) > 1:
            vid = parts[1]
        else:
            return None
    else:
        return None
    return f"https://www.youtube-nocookie.com/embed/{vid}" if _ID.match(vid or "") else None


def _vimeo(host: str, path: str, query: dict) -> str | None:
    if not (host == "vimeo.com" or host == "player.vimeo.com"):
        return None
    parts = [p for p in path.strip("/").split("/") if p and p != "video"]
    if not parts or not parts[0].isdigit():
        return None
    params = {"dnt": "1"}
    secret = parts[1] if len(parts) > 1 else (query.get("h") or [""])[0]
    if secret and re.fullmatch(r"[0-9a-f]{6,32}", secret):
        params["h"] = secret
    return f"https://player.vimeo.com/video/{parts[0]}?{urlencode(params)}"


def _loom(host: str, path: str, query: dict) -> str | None:
    parts = path.strip("/").split("/")
    if host == "loom.com" and len(parts) == 2 and parts[0] in ("share", "embed") \
            and re.fullmatch(r"[0-9a-f]{32}", parts[1]):
        return f"https://www.loom.com/embed/{parts[1]}"
    return None


def _wistia(host: str, path: str, query: dict) -> str | None:
    if not (host.endswith(".wistia.com") or host in ("wi.st", "fast.wistia.net")):
        return None
    parts = path.strip("/").split("/")
    vid = parts[-1] if len(parts) >= 2 and parts[-2] in ("medias", "iframe") else ""
    if re.fullmatch(r"[a-z0-9]{10}", vid):
        return f"https://fast.wistia.net/embed/iframe/{vid}?doNotTrack=true"
    return None


def video_embed(url: str) -> str:
    """The privacy-enhanced player URL for a pasted YouTube, Vimeo, Loom or Wistia URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise Invalid("url", "paste a YouTube, Vimeo, Loom or Wistia link (https://…)")
    host = (parts.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    query = parse_qs(parts.query)
    for parse in (_youtube, _vimeo, _loom, _wistia):
        embed = parse(host, parts.path, query)
        if embed:
            return embed
    raise Invalid("url", "that is not a YouTube, Vimeo, Loom or Wistia video link we recognise")


# ---- notes --------------------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = {"p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h1",
         "h2", "h3", "h4", "hr", "table", "thead", "tbody", "tr", "th", "td"}


def render_notes(source: str) -> str:
    """Markdown to HTML, then nh3 keeps only plain formatting and http(s)/mailto links.

    markdown-it already escapes raw HTML (html=False); nh3 is the second, independent wall.
    """
    html = _markdown.render(source or "")
    return nh3.clean(html, tags=_TAGS, attributes={"a": {"href", "title"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")


# ---- files: type by content --------------------------------------------------------------

_OOXML = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml":
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml":
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml":
        ("application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx"),
}
ACCEPTED = "PDF, PNG, JPEG, Word (.docx), Excel (.xlsx) or PowerPoint (.pptx)"


def sniff(fileobj: BinaryIO) -> tuple[str, str]:
    """(MIME type, extension) of a file judged by its bytes, or Invalid. Leaves it at 0."""
    fileobj.seek(0)
    head = fileobj.read(16)
    fileobj.seek(0)
    if head.startswith(b"%PDF-"):
        return "application/pdf", "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(fileobj) as z:
                types = z.read("[Content_Types].xml").decode("utf-8", "replace")
        except (zipfile.BadZipFile, KeyError, OSError):
            types = ""
        finally:
            fileobj.seek(0)
        for marker, found in _OOXML.items():
            if marker in types:
                return found
    raise Invalid("file", f"this file's content is not a {ACCEPTED} file")


def spool(chunks, limit: int) -> tempfile.SpooledTemporaryFile:
    """Copy an iterable of byte chunks to a spooled temporary file, never past `limit` bytes:
    a large upload spills to disk instead of memory, and an oversized one stops early."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - returned open
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            out.close()
            raise Invalid("file", f"a file may be at most {limit // (1024 * 1024)} MB")
        out.write(chunk)
    if size == 0:
        out.close()
        raise Invalid("file", "the file is empty")
    out.seek(0)
    return out


# ---- deck thumbnails ------------------------------------------------------------------------
# A deck's first page, rendered once at upload by PDFium (pypdfium2: a wheel, no system
# library) and stored next to the PDF as a small PNG. Best effort: any failure leaves the
# deck without a thumbnail and the page shows its placeholder; the upload itself succeeds.

THUMB_WIDTH = 320  # pixels: twice the 160 CSS pixels it is shown at
THUMB_MAX_HEIGHT = 480  # a very tall first page is cut, not scaled down to a sliver
THUMB_BYTES = 2 * 1024 * 1024  # more than a 320x480 PNG can take; a guard when reading back
_PDFIUM = threading.Lock()  # PDFium is not thread-safe (pypdfium2's docs): one render at a time


def _png(width: int, height: int, rows: bytes, stride: int) -> bytes:
    """RGB rows (top first, `stride` bytes apart) as a PNG file; the format is small enough
    to write here rather than add an imaging library for it."""
    raw = b"".join(b"\x00" + rows[y * stride:y * stride + width * 3] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def thumbnail(fileobj: BinaryIO) -> bytes | None:
    """The first page of a PDF as a PNG THUMB_WIDTH pixels wide, or None when it cannot be
    rendered (damaged, encrypted, no pages, PDFium missing). Leaves the file at 0."""
    try:
        import pypdfium2 as pdfium

        fileobj.seek(0)
        with _PDFIUM:
            doc = pdfium.PdfDocument(fileobj, autoclose=False)
            try:
                if len(doc) == 0:
                    return None
                page = doc[0]
                w, h = page.get_size()
                scale = THUMB_WIDTH / w
                cut = max(0.0, h - THUMB_MAX_HEIGHT / scale)  # PDF units off the bottom
                bitmap = page.render(scale=scale, crop=(0, cut, 0, 0), rev_byteorder=True,
                                     fill_color=(255, 255, 255, 255))
                return _png(bitmap.width, bitmap.height, bytes(bitmap.buffer), bitmap.stride)
            finally:
                doc.close()
    except Exception as exc:  # noqa: BLE001 - a thumbnail never fails an upload
        log.warning("deck thumbnail not made: %s", type(exc).__name__)
        return None
    finally:
        fileobj.seek(0)


def _store_thumbnail(s: Session, storage, block: ContentBlock, key: str, png: bytes | None) -> None:
    """Store the deck's new thumbnail next to its file `key`; the old one goes after the commit."""
    if block.thumb_key:
        _after_commit(s, "delete_keys", block.thumb_key)
    block.thumb_key = None
    if png is None:
        return
    thumb_key = key.rsplit(".", 1)[0] + ".thumb.png"
    try:
        storage.put(thumb_key, io.BytesIO(png), "image/png")
    except Exception as exc:  # noqa: BLE001 - the storage refused a small object: no thumbnail
        log.warning("deck thumbnail not stored: %s", type(exc).__name__)
        return
    _after_rollback(s, thumb_key)
    block.thumb_key = thumb_key


def read_thumbnail(storage, block: ContentBlock) -> bytes:
    if not block.thumb_key:
        raise NotFound("This block has no thumbnail.")
    return storage.read(block.thumb_key, THUMB_BYTES)


# ---- blocks -------------------------------------------------------------------------------


def blocks(s: Session, plan: Plan, *, include_internal: bool) -> list[ContentBlock]:
    query = select(ContentBlock).where(ContentBlock.tenant_id == plan.tenant_id,
                                       ContentBlock.plan_id == plan.id)
    if not include_internal:
        query = query.where(ContentBlock.internal.is_(False))
    rows = list(s.scalars(query.order_by(ContentBlock.position, ContentBlock.created_at)))
    if include_internal:
        return rows
    # through the stages: loaded with the plan (plan.milestones would be one more query)
    hidden = {m.id for st in plan.stages for m in st.milestones if m.internal}
    return [b for b in rows if b.milestone_id not in hidden]


def get_block(s: Session, tenant_id: str, block_id: str) -> ContentBlock:
    block = s.get(ContentBlock, block_id)
    if block is None or block.tenant_id != tenant_id:
        raise NotFound("No such content block.")
    return block


def _milestone(plan: Plan, milestone_id: str | None) -> str | None:
    if milestone_id is None:
        return None
    if not any(m.id == milestone_id for m in plan.milestones):
        raise Invalid("milestone_id", "no such milestone in this plan")
    return milestone_id


def _apply(block: ContentBlock, *, url=None, body=None) -> None:
    if block.kind == "video" and url is not None:
        block.url, block.embed_url = url, video_embed(url)
    elif block.kind == "link" and url is not None:
        block.url = url
    if block.kind == "notes" and body is not None:
        block.body = body


def add_block(s: Session, plan: Plan, data, actor: str, *, side: str = "seller") -> ContentBlock:
    """Add a block (schemas.BlockIn); decks and files get their bytes through attach_file."""
    existing = blocks(s, plan, include_internal=True)
    if len(existing) + 1 > LIMITS["blocks_per_plan"]:
        raise LimitReached("blocks_per_plan", LIMITS["blocks_per_plan"], "content blocks")
    if data.kind in ("link", "video") and not data.url:
        raise Invalid("url", f"a {data.kind} needs a url")
    block = ContentBlock(tenant_id=plan.tenant_id, plan_id=plan.id, kind=data.kind,
                         title=data.title, internal=data.internal, side=side, created_by=actor,
                         milestone_id=_milestone(plan, data.milestone_id))
    _apply(block, url=data.url, body=data.body)
    s.add(block)
    position = len(existing) if data.position is None else min(data.position, len(existing))
    existing.insert(position, block)
    for i, row in enumerate(existing):
        row.position = i
    s.flush()
    plans.touch(s, plan, actor, "block.created", block.id, {"title": block.title,
                                                            "kind": block.kind})
    return block


def update_block(s: Session, plan: Plan, block: ContentBlock, data, actor: str) -> ContentBlock:
    fields = data.model_dump(exclude_unset=True)
    if "title" in fields:
        block.title = fields["title"]
    if "internal" in fields:
        block.internal = fields["internal"]
    if "milestone_id" in fields:
        block.milestone_id = _milestone(plan, fields["milestone_id"])
    _apply(block, url=fields.get("url"), body=fields.get("body"))
    block.updated_at = clock.now()
    s.flush()
    plans.touch(s, plan, actor, "block.updated", block.id, {"fields": sorted(fields)})
    return block


def reorder(s: Session, plan: Plan, ids: list[str], actor: str) -> list[ContentBlock]:
    rows = blocks(s, plan, include_internal=True)
    if sorted(ids) != sorted(b.id for b in rows):
        raise Invalid("ids", "list every block of the plan exactly once")
    by_id = {b.id: b for b in rows}
    for i, block_id in enumerate(ids):
        by_id[block_id].position = i
    s.flush()
    plans.touch(s, plan, actor, "block.reordered")
    return [by_id[i] for i in ids]


def delete_block(s: Session, plan: Plan, block: ContentBlock, actor: str) -> None:
    for key in (block.file_key, block.thumb_key):
        if key:
            _after_commit(s, "delete_keys", key)
    s.delete(block)
    s.flush()
    plans.touch(s, plan, actor, "block.deleted", block.id, {"title": block.title})


def _tenant_files(s: Session, tenant_id: str) -> tuple[int, int]:
    """(files, bytes) the tenant stores, all plans together."""
    count, size = s.execute(select(func.count(ContentBlock.file_key),
                                   func.coalesce(func.sum(ContentBlock.file_size), 0))
                            .where(ContentBlock.tenant_id == tenant_id)).one()
    return count or 0, size or 0


def attach_file(s: Session, plan: Plan, block: ContentBlock, fileobj, filename: str,
                storage, actor: str) -> ContentBlock:
    """Store a checked file as the block's content (replacing any previous one).

    `fileobj` is a seekable file already bounded by LIMITS["file_bytes"] (see spool). The
    object is written before the commit; if the transaction fails, it is deleted again.
    """
    if block.kind not in ("deck", "file"):
        raise Invalid("kind", "only decks and files hold a file")
    mime, ext = sniff(fileobj)
    if block.kind == "deck" and mime != "application/pdf":
        raise Invalid("file", "a deck is a PDF file")
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    files = [b for b in blocks(s, plan, include_internal=True) if b.file_key and b.id != block.id]
    if not block.file_key and len(files) + 1 > LIMITS["files_per_plan"]:
        raise LimitReached("files_per_plan", LIMITS["files_per_plan"], "files")
    count, stored = _tenant_files(s, plan.tenant_id)
    if not block.file_key and count + 1 > LIMITS["tenant_files"]:
        raise Invalid("file", f"your workspace holds at most {LIMITS['tenant_files']} files; "
                              "delete files first")
    if stored - block.file_size + size > LIMITS["tenant_bytes"]:
        raise Invalid("file", "your workspace's file storage is full; delete files first")
    key = f"{plan.tenant_id}/{plan.id}/{block.id}/{clock.now():%Y%m%d%H%M%S%f}.{ext}"
    # rendered before the upload: an S3 upload closes the file it reads
    png = thumbnail(fileobj) if block.kind == "deck" else None
    storage.put(key, fileobj, mime)
    _after_rollback(s, key)
    if block.file_key:
        _after_commit(s, "delete_keys", block.file_key)
    _store_thumbnail(s, storage, block, key, png)
    name = re.sub(r"[\x00-\x1f/\\]", "", filename or "").strip()[:150] or f"file.{ext}"
    if not name.lower().endswith("." + ext):
        name = f"{name.rsplit('.', 1)[0] if '.' in name else name}.{ext}"
    block.file_key, block.file_name, block.file_type, block.file_size = key, name, mime, size
    block.updated_at = clock.now()
    s.flush()
    plans.touch(s, plan, actor, "block.file", block.id, {"name": name, "size": size})
    return block


def file_url(storage, block: ContentBlock, *, inline: bool) -> str:
    if not block.file_key:
        raise NotFound("This block has no file yet.")
    return storage.url(block.file_key, filename=block.file_name, content_type=block.file_type,
                       inline=inline)


# ---- storage clean-up after the transaction -------------------------------------------------
# Deleting a plan (by any path: API, deal deletion, tenant removal through the ORM) deletes
# its files; the objects go only once the rows are really gone (after commit).


def _after_commit(s: Session, slot: str, value: str) -> None:
    s.info.setdefault(f"content.{slot}", []).append(value)


def _after_rollback(s: Session, key: str) -> None:
    s.info.setdefault("content.written", []).append(key)


def init_storage_hooks(session_factory, storage_getter) -> None:
    """Delete stored objects after commits that removed them (see module notes)."""

    @event.listens_for(session_factory, "before_flush")
    def _plans_deleted(s, _ctx, _instances):
        for obj in s.deleted:
            if isinstance(obj, Plan):
                _after_commit(s, "delete_prefixes", f"{obj.tenant_id}/{obj.id}/")

    @event.listens_for(session_factory, "after_commit")
    def _commit(s):
        keys = s.info.pop("content.delete_keys", [])
        prefixes = s.info.pop("content.delete_prefixes", [])
        s.info.pop("content.written", None)
        if keys or prefixes:
            storage = storage_getter()
            for key in keys:
                storage.delete(key)
            for prefix in prefixes:
                storage.delete_prefix(prefix)

    @event.listens_for(session_factory, "after_soft_rollback")
    def _rollback(s, _previous):
        written = s.info.pop("content.written", [])
        s.info.pop("content.delete_keys", None)
        s.info.pop("content.delete_prefixes", None)
        if written:
            storage = storage_getter()
            for key in written:
                storage.delete(key)


# ---- engagement ---------------------------------------------------------------------------

EVENT_KINDS = ("opened", "played", "downloaded")


def record_event(s: Session, block: ContentBlock, kind: str, viewer: str, side: str = "buyer"):
    if kind not in EVENT_KINDS:
        raise Invalid("kind", "opened, played or downloaded")
    s.add(ContentEvent(tenant_id=block.tenant_id, plan_id=block.plan_id, block_id=block.id,
                       kind=kind, viewer=(viewer or "Someone")[:200], side=side))


_TIMES = {1: "once", 2: "twice"}
_VERB = {"opened": "opened", "played": "played", "downloaded": "downloaded"}


def engagement(s: Session, plan: Plan) -> list[str]:
    """Sentences for the rep: "Dana opened the security deck twice", most active first."""
    rows = s.execute(select(ContentEvent.viewer, ContentEvent.kind, ContentBlock.title)
                     .join(ContentBlock, ContentBlock.id == ContentEvent.block_id)
                     .where(ContentEvent.tenant_id == plan.tenant_id,
                            ContentEvent.plan_id == plan.id, ContentEvent.side == "buyer"))
    counts = Counter((viewer, kind, title) for viewer, kind, title in rows)
    return [f"{viewer} {_VERB[kind]} {title} {_TIMES.get(n, f'{n} times')}"
            for (viewer, kind, title), n in counts.most_common()]


def engagement_by_plan(s: Session, tenant_id: str, plan_ids: list[str] | None = None) -> dict:
    """The buyers' content events per plan, for analytics (one grouped query):
    {plan_id: {"opened": n, "played": n, "downloaded": n, "last_at": datetime}}."""
    query = (select(ContentEvent.plan_id, ContentEvent.kind, func.count(), func.max(ContentEvent.at))
             .where(ContentEvent.tenant_id == tenant_id, ContentEvent.side == "buyer")
             .group_by(ContentEvent.plan_id, ContentEvent.kind))
    if plan_ids is not None:
        query = query.where(ContentEvent.plan_id.in_(plan_ids))
    out: dict[str, dict] = {}
    for plan_id, kind, n, last in s.execute(query):
        row = out.setdefault(plan_id, {**dict.fromkeys(EVENT_KINDS, 0), "last_at": last})
        row[kind] = n
        row["last_at"] = max(clock.aware(row["last_at"]), clock.aware(last))
    return out


def block_count(s: Session, plan: Plan) -> int:
    """All the plan's blocks, internal ones too (pushed to the CRM: Content_Count__c)."""
    return s.scalar(select(func.count()).select_from(ContentBlock).where(
        ContentBlock.tenant_id == plan.tenant_id, ContentBlock.plan_id == plan.id)) or 0


def card_summary(s: Session, plan: Plan) -> dict:
    """The content at a glance for the CRM cards: how many blocks, how many the buyer sees."""
    rows = blocks(s, plan, include_internal=True)
    shared = {b.id for b in blocks(s, plan, include_internal=False)} if rows else set()
    return {"count": len(rows), "shared": len(shared), "files": sum(1 for b in rows if b.file_key)}


def block_document(block: ContentBlock) -> dict:
    return {
        "id": block.id, "kind": block.kind, "title": block.title, "url": block.url,
        "embed_url": block.embed_url, "body": block.body, "internal": block.internal,
        "milestone_id": block.milestone_id, "position": block.position, "side": block.side,
        "file": ({"name": block.file_name, "type": block.file_type, "size": block.file_size}
                 if block.file_key else None),
        "created_by": block.created_by, "created_at": block.created_at,
        "updated_at": block.updated_at,
    }


__all__ = ["LIMITS", "VIDEO_HOSTS", "add_block", "attach_file", "blocks",
           "delete_block", "engagement", "file_url", "get_block", "record_event", "render_notes",
           "reorder", "sniff", "spool", "update_block", "video_embed"]


def page_view(s: Session, plan: Plan, *, include_internal: bool) -> dict:
    """What the buyer page shows of the content: plan-level blocks, each milestone's blocks,
    notes rendered once (the page itself is cached by plan version)."""
    rows = blocks(s, plan, include_internal=include_internal)
    by_milestone: dict[str, list] = {}
    for b in rows:
        if b.milestone_id:
            by_milestone.setdefault(b.milestone_id, []).append(b)
    return {
        "plan": [b for b in rows if not b.milestone_id], "by_milestone": by_milestone,
        "notes": {b.id: render_notes(b.body) for b in rows if b.kind == "notes"},
        "has_video": any(b.kind == "video" for b in rows), "count": len(rows),
    }


def provider_name(embed_url: str) -> str:
    host = urlsplit(embed_url).hostname or ""
    for name in ("youtube", "vimeo", "loom", "wistia"):
        if name in host:
            return {"youtube": "YouTube"}.get(name, name.capitalize())
    return "the video host"


def size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


# ---- demo content (make run, the browser tests, bench/content.py, docs/ screenshots) -----------


def tiny_pdf(title: str) -> bytes:
    """A valid one-page PDF showing `title` (ASCII), for demos and tests."""
    text = title.encode("ascii", "replace").replace(b"(", b"[").replace(b")", b"]")
    stream = b"BT /F1 28 Tf 60 700 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


DEMO_NOTES = """**Kick-off call, 12 Nov** — Dana, Priya, Riley

- Security review is the gate: questionnaire back by **4 Dec**
- Pilot with the EMEA team (12 reps), success = forecast accuracy
- Next: procurement intro, see the [pricing page](https://example.com/pricing)
"""


def seed_demo(s: Session, plan: Plan, storage, actor: str = "demo") -> list[ContentBlock]:
    """Three videos, two decks, notes, a link and an internal block on `plan`."""
    from types import SimpleNamespace as In

    def block(kind, title, url=None, body="", internal=False):
        return add_block(s, plan, In(kind=kind, title=title, url=url, body=body,
                                     internal=internal, milestone_id=None, position=None), actor)

    made = [
        block("video", "Product demo (12 min)", "https://www.youtube.com/watch?v=aqz-KE-bpKQ"),
        block("video", "How forecasting works", "https://vimeo.com/76979871"),
        block("video", "Riley's walkthrough of your plan",
              "https://www.loom.com/share/0123456789abcdef0123456789abcdef"),
        block("notes", "Meeting notes: kick-off", body=DEMO_NOTES),
    ]
    for title in ("Security overview deck", "Commercial proposal"):
        deck = block("deck", title)
        with tempfile.SpooledTemporaryFile() as f:
            f.write(tiny_pdf(title))
            f.seek(0)
            attach_file(s, plan, deck, f, f"{title}.pdf", storage, actor)
        made.append(deck)
    made.append(block("link", "Customer story: Globex", "https://example.com/globex"))
    made.append(block("notes", "Internal: discount floor", body="Floor is 18% off list.",
                      internal=True))
    return made
