"""Untrusted text made safe to print on a terminal, in a CI log and in a PR comment.

Much of what jsops prints is not jsops's: stream and consumer names, metadata keys, the
lock holder and error descriptions come from a server (or from anyone who may publish
to ``$KV.jsops_lock``), file and resource names come from pull requests, and plan files
from anywhere. Printed as they are:

- control characters drive the terminal: ``ESC ]0;...BEL`` sets its title, ``ESC [2J``
  clears it, ``ESC ]8;;URL`` makes a hidden hyperlink, and C1 or bidi controls reorder
  or hide what is shown;
- a newline in a file name starts a line of its own in a CI log, where
  ``::notice ...::`` is a GitHub workflow command;
- a backtick, ``|``, ``<!--`` or ``[text](url)`` breaks out of a code span or a table
  cell of a markdown comment, and can hide the rest of it or forge a link.

Every output path goes through one of the functions here (the CLI's writers through
:func:`terminal`, names and places through :func:`one_line`, the markdown plan through
:func:`md_code`, :func:`md_text` and :func:`html_text`), so no renderer needs its own
escaping rules. An escaped character is shown as its JSON escape (``\\u001b``, ``\\n``),
which is also what plan values already look like, and is still valid inside a JSON
string, so :func:`terminal` can pass JSON output through unchanged in meaning.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the format characters that reorder or hide text (Arabic
# letter mark, zero-width and directional marks, line/paragraph separators, bidi
# embeddings, overrides and isolates, word joiners, BOM).
_HIDING = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_ANY = re.compile(f"[\x00-\x1f{_HIDING}]")
_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_HIDING}]")  # keeps \t (09) and \n (0a)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\u{ord(char):04x}"


def one_line(text: str) -> str:
    """``text`` with every control and hiding character escaped, newlines and tabs too:
    for a name, a path or a message that must stay one line."""
    return _ANY.sub(_escape, text) if _ANY.search(text) else text


def in_file_name(text: str) -> str:
    """``text`` with every control and hiding character replaced by ``_``: a stream name
    as part of a file name a person will list and open."""
    return _ANY.sub("_", text)


def terminal(text: str) -> str:
    """``text`` as it may be written to a terminal or log: every control and hiding
    character escaped except newlines and tabs (the lines jsops itself makes)."""
    return _BUT_LINES.sub(_escape, text) if _BUT_LINES.search(text) else text


def md_code(text: str) -> str:
    """``text`` as one inline code span that stays inside its markdown table cell: a
    fence of more backticks than the longest run inside (so a backtick cannot close
    it), padded when the text starts or ends with one, ``|`` escaped for the table."""
    text = one_line(text).replace("|", "\\|")
    run = max((len(r) for r in re.findall("`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# What starts markup in plain text: a code span, emphasis, a link or image, an HTML tag or
# comment, an entity, strikethrough, a table cell boundary, and the escape itself. (``_``
# is left: inside a word, as in ``max_age``, it is never emphasis in GitHub's markdown.)
_MARKUP = re.compile(r"([\\`*\[\]<>|~&])")


def md_text(text: str) -> str:
    """``text`` as plain markdown text on one line: each character that starts markup
    backslash-escaped (CommonMark allows it for any ASCII punctuation), so no code span,
    link, image, HTML tag or comment, or table cell boundary can start in it.

    GitHub still links bare URLs and @mentions in it (it finds them in the rendered
    text); text that must not do that belongs in :func:`md_code`."""
    return _MARKUP.sub(r"\\\1", one_line(text))


def html_text(text: str) -> str:
    """``text`` inside raw HTML of a markdown comment (``<summary>``)."""
    # (what html.escape does; that module's import costs 3 ms of every command)
    text = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;").replace("'", "&#x27;")
