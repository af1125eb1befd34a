"""MkDocs hooks of this site (mkdocs.yml `hooks:`): math as MathML, and the notebooks' nav.

**Math.** Pages write TeX as `$...$` and `$$...$$` (docs/theory.md). `pymdownx.arithmatex`
(generic mode) protects it from Markdown and wraps it in `<span class="arithmatex">\\(...\\)</span>`
or `<div class="arithmatex">\\[...\\]</div>`; `on_page_content` converts each one to MathML with
`latex2mathml` (pure Python), which browsers render natively (Chromium since 109, Firefox,
Safari). The site therefore needs no script and nothing from a CDN to show formulas, and works
offline and with JavaScript off. A formula that does not convert, or that leaves a TeX command
unconverted, is logged as a warning, which fails `mkdocs build --strict`.

Notebooks (mkdocs-jupyter) come out of nbconvert with their math as raw `$...$` text and a
MathJax loader from a CDN: the loader (and nbconvert's mermaid.js loader) is removed and the
math of markdown cells and of Markdown/LaTeX outputs is converted the same way.

**Notebooks' nav.** A nav entry holding a `*` (e.g. `notebooks/*.ipynb`) is replaced by every
matching file under docs_dir, sorted by name, that the nav does not list elsewhere, so a new
notebook needs no nav edit.
"""

from __future__ import annotations

import glob
import html
import logging
import os
import re

from latex2mathml.converter import convert as _latex_to_mathml

log = logging.getLogger("mkdocs.hooks.math")

# --------------------------------------------------------------------------------------------
# nav: expand glob entries


def _listed(nav) -> set[str]:
    """Every page path the nav names outright (not through a glob)."""
    out: set[str] = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            out |= _listed(value)
        elif isinstance(value, str) and "*" not in value:
            out.add(value)
    return out


def _expand(nav, docs_dir: str, listed: set[str]):
    """The nav with each glob entry replaced by its matches under docs_dir not in `listed`."""
    out = []
    for item in nav:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                out.append({title: _expand(value, docs_dir, listed)})
                continue
            if "*" not in str(value):
                out.append(item)
                continue
            item = value
        if isinstance(item, str) and "*" in item:
            matches = sorted(
                os.path.relpath(p, docs_dir).replace(os.sep, "/")
                for p in glob.glob(os.path.join(docs_dir, item))
            )
            out.extend(m for m in matches if m not in listed)
        else:
            out.append(item)
    return out


def on_config(config):
    if config.get("nav"):
        config["nav"] = _expand(config["nav"], config["docs_dir"], _listed(config["nav"]))
    return config


# --------------------------------------------------------------------------------------------
# math: TeX -> MathML

_TEXT_ARG = re.compile(r"\\(text|texttt|textrm|textit|textbf|mathrm|operatorname)\{([^{}]*)\}")


def _tex_to_mathml(tex: str, display: bool, where: str) -> str | None:
    """MathML for one formula, or None (with a warning, which fails a strict build)."""
    tex = tex.strip()
    # Inside text arguments `\_` is an escaped underscore; latex2mathml would keep the backslash.
    tex = _TEXT_ARG.sub(lambda m: "\\" + m[1] + "{" + m[2].replace("\\_", "_") + "}", tex)
    try:
        mathml = _latex_to_mathml(tex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises its own exception types, and others
        log.warning("%s: formula not converted to MathML (%s: %s): %s", where,
                    type(err).__name__, err, tex)
        return None
    text = html.unescape(re.sub(r"<[^>]*>", "", mathml))
    if re.search(r"\\[A-Za-z]", text):
        log.warning("%s: formula left a TeX command unconverted: %s", where, tex)
        return None
    # \boxed gives <menclose>, which MathML Core (Chromium) does not draw: a bordered <mrow>.
    if mathml.count("<menclose") == mathml.count('<menclose notation="box">'):
        mathml = mathml.replace('<menclose notation="box">', '<mrow class="boxed">')
        mathml = mathml.replace("</menclose>", "</mrow>")
    alt = html.escape(tex, quote=True)
    return mathml.replace("<math ", f'<math alttext="{alt}" ', 1)


_ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])\s*</(?P=tag)>",
    re.S,
)


def _convert_arithmatex(content: str, where: str) -> str:
    def repl(m: re.Match) -> str:
        display = m["block"] is not None
        tex = html.unescape(m["block"] if display else m["inline"])
        mathml = _tex_to_mathml(tex, display, where)
        if mathml is None:
            return m[0]
        if display:
            return f'<div class="math-display">{mathml}</div>'
        return mathml

    return _ARITHMATEX.sub(repl, content)


# nbconvert (mistune) writes math of markdown cells as `$$...$$`, `$...$` or
# `\begin{env}...\end{env}`, HTML-escaped.
_NB_MATH = re.compile(
    r"\$\$(?P<dblock>.+?)\$\$"
    r"|(?P<env>\\begin\{(?P<name>[A-Za-z*]+)\}.*?\\end\{(?P=name)\})"
    r"|(?<![\\$])\$(?P<inline>[^$\s](?:[^$]*?[^$\s])?)\$(?!\$)",
    re.S,
)
_NB_BLOCKS = re.compile(r'<div class="[^"]*\b(jp-RenderedMarkdown|jp-RenderedLatex)\b[^"]*"[^>]*>')
_DIV = re.compile(r"<div\b|</div>")
_NB_LOADERS = (
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S),
    re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>',
               re.S),
)


def _convert_notebook_math(text: str, where: str) -> str:
    def repl(m: re.Match) -> str:
        if m["dblock"] is not None:
            tex, display = m["dblock"], True
        elif m["env"] is not None:
            tex, display = m["env"], True
        else:
            tex, display = m["inline"], False
        mathml = _tex_to_mathml(html.unescape(tex), display, where)
        if mathml is None:
            return m[0]
        return f'<div class="math-display">{mathml}</div>' if display else mathml

    # Math never spans tags: convert text between tags only (not attributes, not <code>/<pre>).
    parts = re.split(r"(<pre\b.*?</pre>|<code\b.*?</code>|<[^>]+>)", text, flags=re.S)
    return "".join(p if i % 2 else _NB_MATH.sub(repl, p) for i, p in enumerate(parts))


def _notebook(content: str, where: str) -> str:
    for loader in _NB_LOADERS:
        content = loader.sub("", content)
    out, pos = [], 0
    for m in _NB_BLOCKS.finditer(content):
        if m.start() < pos:
            continue
        depth, end = 1, m.end()
        for d in _DIV.finditer(content, m.end()):
            depth += 1 if d[0] == "<div" else -1
            if depth == 0:
                end = d.start()
                break
        else:
            end = len(content)
        out += [content[pos : m.end()], _convert_notebook_math(content[m.end() : end], where)]
        pos = end
    out.append(content[pos:])
    return "".join(out)


def on_page_content(content, page, config, files):
    where = page.file.src_uri
    if where.endswith(".ipynb"):
        content = _notebook(content, where)
    return _convert_arithmatex(content, where)
