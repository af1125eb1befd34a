"""griffe extension for the API pages: a `*` in a docstring's plain-text math (W*, L*, J*: the
optimum) is a literal star, not Markdown emphasis.

The docstrings write the optimum as `W*` and the loss at it as `L*`; Markdown pairs two such
stars on a line into italics ("(W - W*) Sigma (W - W*)" lost both stars and set the middle in
italics). Stars inside code spans, fences, indented code blocks and `$...$` TeX are left
alone, as are `**bold**`, `*emphasis*` opened before a letter and closed after one, and list
bullets."""

from __future__ import annotations

import re

import griffe

_VERBATIM = re.compile(r"(`+)[\s\S]*?\1|\$\$[\s\S]*?\$\$|\$[^$\n]+\$")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[A-Za-z])[^*\n]*?[A-Za-z.)]\*(?![\w*])")
_LONE_STAR = re.compile(r"(?<![*\\])\*(?!\*)")
_BULLET = re.compile(r"^(\s*)\*(?= )", re.M)


def escape_stars(text: str) -> str:
    """`text` with every star that would start or end unintended emphasis escaped."""
    blocks, code, prev_blank = [], False, True
    for line in text.split("\n"):  # indented code blocks (4 spaces after a blank line) as is
        code = line.startswith("    ") and (prev_blank or code)
        if blocks and blocks[-1][0] == code:
            blocks[-1][1].append(line)
        else:
            blocks.append((code, [line]))
        prev_blank = not line.strip()
    return "\n".join(
        "\n".join(lines) if is_code else _escape_inline("\n".join(lines))
        for is_code, lines in blocks
    )


def _escape_inline(text: str) -> str:
    out, pos = [], 0
    for m in _VERBATIM.finditer(text):
        out += [_escape_plain(text[pos : m.start()]), m.group(0)]
        pos = m.end()
    return "".join(out + [_escape_plain(text[pos:])])


def _escape_plain(text: str) -> str:
    kept: list[str] = []

    def keep(m: re.Match) -> str:
        kept.append(m.group(0))
        return f"\x00{len(kept) - 1}\x00"

    text = _BULLET.sub(lambda m: m.group(1) + "\x01", text)  # a list bullet stays a bullet
    text = _EMPHASIS.sub(keep, text)
    text = _LONE_STAR.sub(r"\\*", text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)
    return text.replace("\x01", "*")


class EscapeStars(griffe.Extension):
    """Applies `escape_stars` to every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        _walk(pkg, set())


def _walk(obj, seen: set) -> None:
    if id(obj) in seen or obj.is_alias:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = escape_stars(obj.docstring.value)
    for member in obj.members.values():
        _walk(member, seen)
