"""The documentation site (mkdocs.yml): built with `mkdocs build --strict`, then checked.

- every page of the nav exists as HTML, and every notebook in notebooks/ is in the nav;
- every relative link and resource (`a href`, `img`/`script` `src`, `link href`) of every built
  page resolves to a file of the site, and every `#anchor` to an id in its target page;
- no page loads anything from the network (no CDN script, stylesheet, font or image);
- every public name of `multimodal_dln`, `.theory`, `.greedy` and `.sweeps` has its entry in the
  API reference;
- the pages opened in headless Chromium have their main content, their formulas are MathML
  elements the browser lays out (each with a nonzero box, fractions stacked), and no TeX is
  left in the text; docs/theory.md's formulas all arrive: as many as Python-Markdown's
  arithmatex finds in its source.

The site is built into a temporary folder, or taken from MDLN_DOCS_SITE when that names a
built site (.ci/run builds it once with `--strict` and passes it on). Skipped, with the reason,
when the docs extra (mkdocs) is not installed; the browser checks are skipped when
/usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocs_jupyter", reason="the docs extra is not installed")
pytest.importorskip("latex2mathml", reason="the docs extra is not installed")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# Flags for a closed network: no sandbox (root in CI), no GPU, and nothing that phones home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--allow-file-access-from-files",  # the harness page reads the pages in its iframes
]


def _load_hooks():
    spec = importlib.util.spec_from_file_location("mdln_docs_hooks",
                                                  REPO / "docs/_hooks/mkdocs_hooks.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages() -> list[str]:
    """The nav's page paths (relative to docs/), glob entries expanded as the build does."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    hooks = _load_hooks()
    nav = hooks._expand(config["nav"], str(REPO / "docs"), hooks._listed(config["nav"]))

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from walk(value)
            else:
                yield value

    return list(walk(nav))


def _html_path(page: str) -> str:
    """The built file of a docs/ page with `use_directory_urls` (foo.md -> foo/index.html)."""
    stem = re.sub(r"\.(md|ipynb)$", "", page)
    name = stem.rsplit("/", 1)[-1]
    if name in ("index", "README"):
        return (stem[: -len(name)] + "index.html").lstrip("/")
    return f"{stem}/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    given = os.environ.get("MDLN_DOCS_SITE")
    if given and (Path(given) / "index.html").is_file():
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("docs") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    print(f"mkdocs build --strict: {time.perf_counter() - start:.1f} s")
    return out


class _Page(HTMLParser):
    """Ids, links and resources of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag.attribute, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None and tag in ("a", "img", "script", "link", "iframe",
                                                      "source", "video", "audio", "embed"):
                self.links.append((f"{tag}.{key}", attrs[key]))  # fmt: skip


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_nav_pages_built(site):
    pages = _nav_pages()
    missing = [p for p in pages if not (site / _html_path(p)).is_file()]
    assert not missing, f"nav pages without HTML in the site: {missing}"
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    in_nav = sorted(p.rsplit("/", 1)[-1] for p in pages if p.endswith(".ipynb"))
    assert in_nav == notebooks, f"notebooks {notebooks} but nav has {in_nav}"
    # Each page has its own content, not an empty shell: a title and some text in <article>.
    for p in pages:
        text = (site / _html_path(p)).read_text(encoding="utf-8")
        article = re.search(r'<article class="md-content__inner[^"]*">(.*?)</article>', text, re.S)
        assert article, f"{p}: no <article> in the page"
        body = re.sub(r"<[^>]+>", " ", article[1])
        assert "<h1" in article[1] and len(body.split()) > 40, f"{p}: no title or no content"


def test_api_reference_complete(site):
    """Every public name of the four namespaces has its entry in the API reference (a name added
    to the package but not to docs/api/*.md fails here)."""
    import inspect

    import multimodal_dln

    # Tuple-assigned constants that griffe cannot document one by one: described in the text.
    in_text = {"greedy": {"REGULAR", "CARE_0", "CARE_1"}}
    missing = []
    namespaces = {"multimodal_dln": multimodal_dln, "theory": multimodal_dln.theory,
                  "greedy": multimodal_dln.greedy, "sweeps": multimodal_dln.sweeps}  # fmt: skip
    for page, module in namespaces.items():
        text = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        ids = set(re.findall(r'id="([^"]+)"', text))
        names = getattr(module, "__all__", None) or [
            n for n in dir(module) if not n.startswith("_")
            and not inspect.ismodule(getattr(module, n))
        ]  # fmt: skip
        assert len(names) > 10, (page, names)
        for name in names:
            if name in in_text.get(page, ()):
                assert f"<code>{name} = " in text, f"api/{page}: {name} not described"
            elif f"{module.__name__}.{name}" not in ids:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names without an entry in docs/api/: {missing}"


def test_docstring_stars_are_literal_not_emphasis(site):
    """W*, L*, J* in the docstrings' plain-text math are stars on the API pages (the griffe
    extension docs/_hooks/griffe_stars.py), while code, TeX, bold, emphasis and bullets keep
    their meaning."""
    spec = importlib.util.spec_from_file_location("mdln_griffe_stars",
                                                  REPO / "docs/_hooks/griffe_stars.py")  # fmt: skip
    stars = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stars)
    esc = stars.escape_stars
    assert esc("(W - W*) S (W - W*), *regular*") == r"(W - W\*) S (W - W\*), *regular*"
    kept = "**Fields:** `W*` $W^*$ ``a*b``\n\n    lambda ||W*||^2\n\n* a bullet"
    assert esc(kept) == kept
    page = (site / "api/multimodal_dln/index.html").read_text()
    assert "(W - W*) Sigma_xx (W - W*)" in page  # generalization_error_curve's docstring
    stray = [m for m in re.findall(r"<em>(.*?)</em>", page, re.S) if not re.match(r"\w", m)]
    assert not stray, stray  # emphasis that starts at ")" or "_": two stars paired by mistake


def test_links_resolve_and_nothing_remote(site):
    pages = {p.relative_to(site).as_posix(): _parse(p) for p in site.rglob("*.html")}
    broken, remote, checked = [], [], 0
    for name, page in pages.items():
        if name == "404.html":  # its links are absolute to the server root by design
            continue
        for what, url in page.links:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if what != "a.href":
                    remote.append(f"{name}: {what} {url}")
                continue
            if parts.scheme in ("mailto", "data", "javascript") or url == "":
                continue
            if parts.scheme or url.startswith("/"):
                broken.append(f"{name}: {what} {url} (not relative)")
                continue
            base = (site / name).parent
            target = (base / unquote(parts.path)).resolve() if parts.path else site / name
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file() or site.resolve() not in target.resolve().parents:
                broken.append(f"{name}: {what} {url} (no file)")
                continue
            if parts.fragment and target.suffix == ".html":
                key = target.resolve().relative_to(site.resolve()).as_posix()
                if unquote(parts.fragment) not in pages[key].ids:
                    broken.append(f"{name}: {what} {url} (no id {parts.fragment!r})")
    assert not remote and not broken, (
        f"{len(remote)} resources loaded from the network:\n" + "\n".join(remote[:20])
        + f"\n{len(broken)} broken links:\n" + "\n".join(broken[:50])
    )
    # Each page links to every nav page and its own headings (86 relative links per page when
    # this was written): far fewer means pages lost their navigation.
    assert checked >= 40 * len(pages), f"only {checked} links in {len(pages)} pages"


# Runs in a harness page holding every nav page in an iframe (one Chromium start for all); it
# writes one JSON record per page into <pre id="result">, which --dump-dom returns.
_HARNESS = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<pre id="result">not run</pre>
%(frames)s
<script>
const MATHML = "http://www.w3.org/1998/Math/MathML";
window.addEventListener("load", () => {
  const out = [];
  for (const frame of document.querySelectorAll("iframe")) {
    const r = {page: frame.dataset.page};
    try {
      const doc = frame.contentDocument;
      const article = doc.querySelector("article.md-content__inner");
      r.title = !!(article && article.querySelector("h1"));
      const maths = article ? [...article.querySelectorAll("math")] : [];
      r.math = maths.length;
      r.foreign = maths.filter(m => m.namespaceURI !== MATHML).length;
      r.empty = maths.filter(m => {
        const b = m.getBoundingClientRect(); return !(b.width > 0 && b.height > 0);
      }).length;
      // A fraction laid out by a MathML engine has its numerator above its denominator.
      const fracs = article ? [...article.querySelectorAll("mfrac")] : [];
      r.fractions = fracs.length;
      r.flat_fractions = fracs.filter(f => f.children.length !== 2 ||
        f.children[0].getBoundingClientRect().bottom >
        f.children[1].getBoundingClientRect().top + 1).length;
      const clone = article ? article.cloneNode(true) : doc.createElement("div");
      // Text a reader sees outside code (a notebook cell's hidden .clipboard-copy-txt is code).
      const skip = "pre, code, math, script, style, .headerlink, .clipboard-copy-txt, [hidden]";
      for (const el of clone.querySelectorAll(skip)) el.remove();
      r.text = clone.textContent;
    } catch (e) { r.error = String(e); }
    out.push(r);
  }
  document.getElementById("result").textContent = JSON.stringify(out);
});
</script></body></html>
"""


def _theory_formula_count() -> int:
    """Formulas in docs/theory.md as Python-Markdown + arithmatex (the build's parser) find them."""
    import markdown

    md = markdown.Markdown(
        extensions=["tables", "pymdownx.arithmatex"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )
    return md.convert((REPO / "docs/theory.md").read_text()).count('class="arithmatex"')


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_pages_render_in_chromium(site, tmp_path):
    pages = _nav_pages()
    frames = "\n".join(
        f'<iframe data-page="{html.escape(p)}" width="1200" height="900" '
        f'src="{(site / _html_path(p)).resolve().as_uri()}"></iframe>'
        for p in pages
    )
    harness = tmp_path / "harness.html"
    harness.write_text(_HARNESS % {"frames": frames}, encoding="utf-8")
    cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", harness.as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no result from Chromium (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    records = {r["page"]: r for r in json.loads(html.unescape(found[1]))}
    assert sorted(records) == sorted(pages)

    problems = []
    for page, r in records.items():
        if "error" in r:
            problems.append(f"{page}: {r['error']}")
            continue
        if not r["title"] or len(r["text"].split()) < 40:
            problems.append(f"{page}: main content missing")
        if r["foreign"] or r["empty"] or r["flat_fractions"]:
            problems.append(f"{page}: of {r['math']} formulas {r['foreign']} not MathML, "
                            f"{r['empty']} without a box; {r['flat_fractions']} of "
                            f"{r['fractions']} fractions not stacked")  # fmt: skip
        # TeX left in the text outside code: $$, a $...$ pair (not a price: "$5"), \( or \[
        # delimiters, or a \command.
        for m in re.finditer(r"\$\$|\$[^$\s\d][^$]*?\$|\\[(\[]|\\[A-Za-z]{2,}", r["text"]):
            context = r["text"][max(0, m.start() - 40) : m.end() + 40].replace("\n", " ")
            problems.append(f"{page}: unrendered TeX {m[0]!r} in ...{context}...")
            break
    assert not problems, "\n".join(problems)

    theory = records["theory.md"]
    expected = _theory_formula_count()
    assert expected > 400, expected  # the page is the math reference: hundreds of formulas
    assert theory["math"] == expected, f"theory.md: {theory['math']} of {expected} formulas"
    assert theory["fractions"] > 20, theory["fractions"]
    assert records["notebooks/quickstart.ipynb"]["math"] > 0  # notebook markdown math
