"""CSRF on every state-changing form (issue 10 §8): every POST form in the templates carries
the token (the editor's through its `hidden()` macro). The views' refusals are tested next to
each form: tests/test_buyer.py, tests/test_editor.py, tests/test_hubspot.py (sandbox shortcut)."""
from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "webapp" / "templates"
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.DOTALL | re.IGNORECASE)


def test_every_post_form_in_the_templates_carries_a_csrf_token():
    forms = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for attrs, body in FORM.findall(path.read_text()):
            if re.search(r'method="post"', attrs, re.IGNORECASE):
                forms.append((path.relative_to(TEMPLATES), attrs, body))
    assert len(forms) >= 20  # the walk found the buyer page's, the editor's and the sandbox's
    missing = [(str(p), a) for p, a, b in forms if 'name="csrf"' not in b and "hidden(" not in b]
    assert not missing, missing
