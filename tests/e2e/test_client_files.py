"""The browser client's files, checked without a browser: the rules the CSP and accessibility need (no inline
script or style, no HTML built from strings, a name for every control), and how the server serves the pages and
the npm packages."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from conftest import IN_CI, ROOT, RunningServer

STATIC = ROOT / "web" / "static"
HTML_FILES = sorted(STATIC.glob("*.html"))
JS_FILES = sorted(STATIC.rglob("*.js"))
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """The tags of one HTML file in order, with their attributes, the text inside each, and the labels."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[int, str] = {}
        self.label_for: set[str] = set()
        self.in_label: set[int] = set()  # controls wrapped in their <label>
        self._open: list[tuple[str, int, list[str]]] = []
        self.feed(path.read_text())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        index = len(self.tags)
        self.tags.append((tag, a))
        if tag == "label" and "for" in a:
            self.label_for.add(a["for"])
        if any(t == "label" for t, _, _ in self._open):
            self.in_label.add(index)
        if tag not in VOID:
            self._open.append((tag, index, []))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                for _, index, parts in self._open[i:]:
                    self.texts[index] = "".join(parts)
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open:
            parts.append(data)


EARLY_SCRIPT = "/static/js/early.js"


@pytest.mark.parametrize("path", HTML_FILES, ids=lambda p: p.name)
def test_pages_have_no_inline_script_or_style_and_every_control_has_a_name(path: Path) -> None:
    page = Page(path)
    text = path.read_text()
    assert "<style" not in text, "inline <style> is refused by the CSP"
    assert not re.search(r"\sstyle\s*=", text), "style attributes are refused by the CSP"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handlers are refused by the CSP"
    assert 'lang="en"' in text and 'name="viewport"' in text
    scripts = [attrs.get("src") for tag, attrs in page.tags if tag == "script"]
    if any(tag == "form" for tag, _ in page.tags):
        # it holds a form sent before the page's module is ready, which the browser would send with its fields in
        # the address
        assert scripts[:1] == [EARLY_SCRIPT], f"a page with a form loads {EARLY_SCRIPT} first: {scripts}"
    for i, (tag, attrs) in enumerate(page.tags):
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/js/"), attrs
            assert attrs.get("type") == "module" or attrs["src"] == EARLY_SCRIPT, attrs
            assert (STATIC / attrs["src"].removeprefix("/static/")).is_file(), attrs["src"]
            assert page.texts.get(i, "").strip() == "", "inline script is refused by the CSP"
        if tag == "link" and attrs.get("rel") == "stylesheet":
            assert (STATIC / attrs["href"].removeprefix("/static/")).is_file(), attrs["href"]
        if tag in ("input", "textarea", "select") and attrs.get("type") != "hidden":
            named = attrs.get("id") in page.label_for or "aria-label" in attrs or i in page.in_label
            assert named, f"{tag} {attrs} has no label"
        if tag == "button":
            assert page.texts.get(i, "").strip() or attrs.get("aria-label"), f"button {attrs} has no name"
            assert attrs.get("type") in ("button", "submit", "reset"), f"button {attrs} needs an explicit type"
        if tag == "img":
            assert "alt" in attrs, f"img {attrs} needs alt text"


@pytest.mark.parametrize("path", sorted((STATIC / "js" / "pages").glob("*.js")), ids=lambda p: p.name)
def test_every_page_module_says_it_is_ready_last(path: Path) -> None:
    """Forms sent before then are held by early.js: a page that never calls pageReady() would hold them for ever."""
    assert path.read_text().rstrip().endswith("\npageReady();"), f"{path.name} must end with pageReady();"


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: str(p.relative_to(STATIC)))
def test_scripts_never_build_html_from_strings(path: Path) -> None:
    code = path.read_text()
    for pattern in (r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write", r"\beval\(",
                    r"new Function\("):
        assert not re.search(pattern, code), f"{path.name} uses {pattern}: insert user text with textContent"
    for imported in re.findall(r'^import [^"]*"([^"]+)"', code, flags=re.MULTILINE):
        if imported.startswith("/vendor/"):
            continue
        assert (path.parent / imported).resolve().is_file(), f"{path.name} imports {imported}"


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} appears twice in {policy!r}"
        parsed[name] = sources
    return parsed


async def test_pages_are_served_at_their_paths_with_the_csp(server: RunningServer, http: aiohttp.ClientSession) -> None:
    from signalling.routes.pages import PAGES, STRIPE_PAGES

    stripe = server.services.billing.stripe
    # the documented exception: the wallet page loads Stripe.js from the origins the Stripe gateway names
    stripe_scripts = list(stripe.browser_sources().get("script-src", ())) if stripe is not None else []
    assert all(re.fullmatch(r"https?://[\w.:-]+", origin) for origin in stripe_scripts), stripe_scripts
    for route, filename in PAGES.items():
        path = route.replace("{id}", "7")
        async with http.get(server.url + path) as resp:
            assert resp.status == 200, path
            assert resp.content_type == "text/html", path
            policy = resp.headers["Content-Security-Policy"]
            assert await resp.text() == (STATIC / filename).read_text()
        parsed = directives(policy)
        allowed = ["'self'"] + (stripe_scripts if filename in STRIPE_PAGES else [])
        assert parsed.get("script-src") == allowed, (path, policy)
        assert parsed.get("default-src") == ["'self'"] and parsed.get("object-src") == ["'none'"], (path, policy)
        assert parsed.get("style-src") == ["'self'"], (path, policy)
        for unsafe in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'strict-dynamic'", "*", "data:"):
            assert unsafe not in parsed["script-src"], (path, unsafe, policy)
    async with http.get(server.url + "/") as resp:
        assert resp.status == 200 and "signin.js" in await resp.text()
    async with http.get(server.url + "/static/js/pages/call.js") as resp:
        assert resp.status == 200 and resp.content_type in ("text/javascript", "application/javascript")


async def test_socket_io_client_is_served_from_node_modules(server: RunningServer, http: aiohttp.ClientSession) -> None:
    if not (ROOT / "node_modules" / "socket.io-client").is_dir():
        (pytest.fail if IN_CI else pytest.skip)("the npm packages are not installed: run `npm ci` (scripts/test does)")
    async with http.get(server.url + "/vendor/socket.io-client/socket.io.esm.min.js") as resp:
        assert resp.status == 200
        assert resp.content_type in ("text/javascript", "application/javascript")
        assert "Socket.IO v4" in (await resp.text())[:200]
    for outside in ("/vendor/socket.io-client/../package.json", "/vendor/socket.io-client/%2e%2e/package.json",
                    "/vendor/engine.io-client/package.json"):
        async with http.get(server.url + outside) as resp:
            assert resp.status in (403, 404), outside
