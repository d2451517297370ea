"""Runbooks: markdown files that say how to confirm and fix one kind of problem, found by question or code.

The shipped runbooks live in `runbooks/`; operators add folders of their own. From each folder only `*.md` files
directly inside it are read, each at most MAX_BYTES; a symbolic link is followed only to a file inside the same
folder. A runbook's id is its file name without `.md`; one in an operator folder replaces a shipped runbook of
the same id (the first folder listed wins among operator folders). A runbook may start with a header:

    ---
    title: Pod in CrashLoopBackOff
    codes: POD_CRASHLOOP, POD_RESTARTING
    ---

Without one, the title is the first `#` heading (else the id) and a `codes:` line before the first `##` section
is still read. Ranking: TF-IDF over words (and word pairs) and character n-grams, cosine similarity, plus a boost
for a runbook that lists a finding code the question names. The index is cached per set of folders and rebuilt
when a file is added, removed or changed.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from runbooks import SHIPPED

logger = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024  # a larger file is skipped (and logged): runbooks are short documents
MAX_QUESTION_CHARS = 10_000  # the engine's own bound; the tool allows far less
EXCERPT_CHARS = 700
CHUNK_CHARS = 450  # sections are cut into chunks about this long, so an excerpt is a focused passage
CODE_BOOST = 1.0  # above any text similarity (at most 1): a runbook for a named code ranks first
MIN_SCORE = 0.05  # weaker text matches are noise (an unrelated question scores below 0.03)
WORD_WEIGHT = 0.7  # words decide; character n-grams catch inflections and fused words (OOMKilled, restarting)
SHIPPED_SOURCE = "shipped"
CACHED_LIBRARIES = 8

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CODE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_CODE_IN_TEXT = re.compile(r"\b(?:IST\d{4}|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_META = re.compile(r"^([A-Za-z_-]+)\s*:\s*(.*)$")
_CAMEL = re.compile(r"\b[A-Z]?[a-z]+(?:[A-Z][a-z]+)+\b")  # NetworkPolicy, CrashLoopBackOff, kubeProxy
_CAMEL_PART = re.compile(r"[A-Z]?[a-z]+")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")  # a list item starts a new block


@dataclass(frozen=True)
class Section:
    """A heading and the text under it (the text before the first heading has heading "")."""

    heading: str
    text: str


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    codes: tuple[str, ...]
    source: str  # "shipped", or the name of the operator folder it came from
    text: str  # the whole file
    body: str  # the text after the header block (all of it when there is none)
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Hit:
    runbook: Runbook
    score: float
    excerpt: str
    matched_codes: tuple[str, ...]


@dataclass(frozen=True)
class Search:
    hits: list[Hit]
    codes: tuple[str, ...]  # the finding codes looked for: named in the question or passed
    unknown_codes: tuple[str, ...]  # of those, the ones no runbook lists


# -- parsing ---------------------------------------------------------------------------------------------
def parse(text: str, runbook_id: str, source: str) -> Runbook:
    """A runbook from its markdown text (see the module docstring for the header)."""
    lines = text.splitlines()
    meta: dict[str, str] = {}
    body = lines
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, min(len(lines), 50)) if lines[i].strip() == "---"), None)
        if end is not None:
            meta = _meta(lines[1:end])
            body = lines[end + 1 :]
    if "codes" not in meta:
        head = []
        for line in body:
            if line.startswith("## "):
                break
            head.append(line)
        meta = {**_meta(head), **meta}
    sections = _sections(body)
    title = meta.get("title") or next((s.heading for s in sections if s.heading), "") or runbook_id
    return Runbook(
        id=runbook_id,
        title=title[:200],
        codes=normalize_codes(re.split(r"[,\s]+", meta.get("codes", ""))),
        source=source,
        text=text,
        body="\n".join(body).strip("\n"),
        sections=tuple(sections),
    )


def _meta(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        m = _META.match(line.strip())
        if m and m.group(1).lower() in ("title", "codes"):
            out.setdefault(m.group(1).lower(), m.group(2).strip())
    return out


def _sections(lines: list[str]) -> list[Section]:
    out: list[Section] = []
    heading = ""
    text: list[str] = []
    for line in lines:
        m = _HEADING.match(line)
        if m:
            if heading or any(t.strip() for t in text):
                out.append(Section(heading, "\n".join(text).strip()))
            heading, text = m.group(2), []
        else:
            text.append(line)
    if heading or any(t.strip() for t in text):
        out.append(Section(heading, "\n".join(text).strip()))
    return out


def normalize_codes(values: Iterable[str]) -> tuple[str, ...]:
    """Upper-cased, de-duplicated finding codes; anything that is not shaped like a code is dropped."""
    out: dict[str, None] = {}
    for value in values:
        code = value.strip().upper()
        if code and len(code) <= 64 and CODE.fullmatch(code):
            out[code] = None
    return tuple(out)


def codes_in(text: str) -> tuple[str, ...]:
    """Finding codes a text names (POD_CRASHLOOP, IST0101), whatever their case."""
    return normalize_codes(m.group(0) for m in _CODE_IN_TEXT.finditer(text))


# -- reading folders -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _File:
    id: str
    source: str
    path: Path  # resolved: inside its folder
    version: tuple[int, int, int]  # inode, size, mtime: a change rebuilds the index


def _scan(folder: Path, source: str) -> tuple[list[_File], list[str]]:
    """The runbook files of one folder, and why others were passed over (one line each)."""
    files: list[_File] = []
    problems: list[str] = []
    try:
        root = folder.expanduser().resolve(strict=True)
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        return [], [f"runbook folder {folder} cannot be read: {e.strerror or e}"]
    for entry in entries:
        if not entry.name.endswith(".md"):
            continue
        stem = entry.name[: -len(".md")]
        where = f"{folder}/{entry.name}"
        if not ID.fullmatch(stem):
            problems.append(f"runbook {where} skipped: its name is not usable as an id (letters, digits, . _ -)")
            continue
        try:
            target = Path(entry.path).resolve(strict=True)
            info = target.stat()
        except (OSError, RuntimeError) as e:  # a dangling link, a loop
            problems.append(f"runbook {where} skipped: {getattr(e, 'strerror', None) or e}")
            continue
        if not target.is_relative_to(root):
            problems.append(f"runbook {where} skipped: it is a link to a file outside the folder")
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"runbook {where} skipped: not a regular file")
            continue
        if info.st_size > MAX_BYTES:
            problems.append(f"runbook {where} skipped: {info.st_size} bytes, more than {MAX_BYTES}")
            continue
        files.append(_File(stem, source, target, (info.st_ino, info.st_size, info.st_mtime_ns)))
    return files, problems


def _read(f: _File) -> str | None:
    """The file's text; None when it changed into something that may not be read since it was listed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(f.path, flags)
    except OSError as e:
        logger.warning("runbook %s skipped: %s", f.path, e.strerror or e)
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            logger.warning("runbook %s skipped: not a regular file", f.path)
            return None
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        logger.warning("runbook %s skipped: more than %s bytes", f.path, MAX_BYTES)
        return None
    return data.decode("utf-8", errors="replace")


# -- the index ----------------------------------------------------------------------------------------------
@dataclass
class _Vectors:
    word: TfidfVectorizer
    char: TfidfVectorizer
    docs: tuple[Any, Any]  # sparse matrices, one row per runbook
    chunks: tuple[Any, Any]  # one row per chunk
    chunk_owner: np.ndarray[Any, Any]  # runbook row of each chunk
    chunk_text: list[str]

    def similarity(self, question: str, pair: tuple[Any, Any]) -> np.ndarray[Any, Any]:
        word = pair[0] @ self.word.transform([question]).T
        char = pair[1] @ self.char.transform([question]).T
        return np.asarray((WORD_WEIGHT * word + (1 - WORD_WEIGHT) * char).todense()).ravel()


@dataclass
class Library:
    """The runbooks of a set of folders, indexed for search."""

    runbooks: dict[str, Runbook]
    problems: list[str] = field(default_factory=list)
    _order: list[str] = field(default_factory=list)
    _vectors: _Vectors | None = None

    @classmethod
    def build(cls, runbooks: Sequence[Runbook], problems: Sequence[str] = ()) -> Library:
        lib = cls({r.id: r for r in runbooks}, list(problems), [r.id for r in runbooks])
        if runbooks:
            try:
                lib._vectors = _vectorize(runbooks)
            except ValueError:  # no usable words at all (every runbook empty): codes still match
                logger.warning("runbooks hold no searchable text; only finding codes match")
        return lib

    @property
    def codes(self) -> set[str]:
        """Every finding code some runbook lists."""
        return {c for r in self.runbooks.values() for c in r.codes}

    def get(self, runbook_id: str) -> Runbook | None:
        return self.runbooks.get(runbook_id)

    def search(self, question: str, codes: Iterable[str] = (), limit: int = 5) -> Search:
        """The runbooks that best answer `question`, best first; runbooks listing a code named in the question
        or in `codes` come first. Matches too weak to help are left out."""
        question = question[:MAX_QUESTION_CHARS]
        known = self.codes
        passed = normalize_codes(codes)
        # a snake_case word of the question counts only when it is a code some runbook lists (not pods_list)
        asked = normalize_codes([*passed, *(c for c in codes_in(question) if c in known)])
        wanted = {c for c in asked if c in known}
        unknown = tuple(c for c in passed if c not in known)
        n = len(self._order)
        text_scores = np.zeros(n)
        if self._vectors is not None and question.strip():
            text_scores = self._vectors.similarity(question, self._vectors.docs)
        ranked: list[tuple[float, int, tuple[str, ...]]] = []
        for row, rid in enumerate(self._order):
            matched = tuple(c for c in self.runbooks[rid].codes if c in wanted)
            score = float(text_scores[row])
            if matched:
                score += CODE_BOOST + 0.1 * (len(matched) - 1)
            elif score < MIN_SCORE:
                continue
            ranked.append((score, row, matched))
        ranked.sort(key=lambda t: (-t[0], self._order[t[1]]))
        hits = [
            # the codes it matched count as words of the question, so the excerpt is the passage naming them
            Hit(self.runbooks[self._order[row]], round(score, 3), self._excerpt(row, f"{question} {' '.join(m)}"), m)
            for score, row, m in ranked[: max(0, limit)]
        ]
        return Search(hits, asked, unknown)

    def _excerpt(self, row: int, question: str) -> str:
        """The passage of one runbook closest to the question (its first section when nothing is close)."""
        vectors = self._vectors
        if vectors is None:
            rb = self.runbooks[self._order[row]]
            first = next((s for s in rb.sections if s.text), Section("", rb.text))
            return clip(_chunk_text(first.heading, first.text))
        mine = np.flatnonzero(vectors.chunk_owner == row)
        best = mine[0] if len(mine) else None
        if question.strip() and len(mine):
            scores = vectors.similarity(question, (vectors.chunks[0][mine], vectors.chunks[1][mine]))
            if scores.max() > 0:
                best = mine[int(scores.argmax())]
        return clip(vectors.chunk_text[best]) if best is not None else ""


def _vectorize(runbooks: Sequence[Runbook]) -> _Vectors:
    docs = [_document(r) for r in runbooks]
    chunk_text: list[str] = []
    owner: list[int] = []
    for row, rb in enumerate(runbooks):
        for s in rb.sections:
            if s.heading == rb.title and not s.text:
                continue
            for piece in _chunks(s.text):
                chunk_text.append(_chunk_text(s.heading, piece))
                owner.append(row)
    word = TfidfVectorizer(
        analyzer="word", ngram_range=(1, 2), sublinear_tf=True, stop_words="english", preprocessor=_words
    )
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, preprocessor=_words)
    doc_pair = (word.fit_transform(docs), char.fit_transform(docs))
    chunk_pair = (word.transform(chunk_text), char.transform(chunk_text)) if chunk_text else doc_pair
    if not chunk_text:
        chunk_text, owner = docs, list(range(len(docs)))
    return _Vectors(word, char, doc_pair, chunk_pair, np.asarray(owner), chunk_text)


def _words(text: str) -> str:
    """Lower-cased text in which a CamelCase word is followed by its parts, so "network policy" finds
    NetworkPolicy and "crash loop" finds CrashLoopBackOff (the question is read the same way)."""
    spread = _CAMEL.sub(lambda m: f"{m.group(0)} {' '.join(_CAMEL_PART.findall(m.group(0)))}", text)
    return spread.lower()


def _document(rb: Runbook) -> str:
    # the title and codes count twice: they say what the runbook is about more surely than any paragraph
    codes = " ".join(rb.codes)
    return f"{rb.title}\n{rb.title}\n{codes}\n{codes}\n{rb.body}"


def _chunks(text: str) -> list[str]:
    """Consecutive paragraphs and list items packed into pieces of about CHUNK_CHARS (a longer block stays whole),
    so an excerpt is one focused passage."""
    blocks: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        item: list[str] = []
        for line in para.splitlines():
            if _ITEM.match(line) and item:
                blocks.append("\n".join(item))
                item = []
            item.append(line)
        if item:
            blocks.append("\n".join(item))
    out: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + len(block) > CHUNK_CHARS:
            out.append(current)
            current = ""
        current = f"{current}\n{block}" if current else block
    if current.strip():
        out.append(current)
    return out


def _chunk_text(heading: str, text: str) -> str:
    return f"## {heading}\n{text}" if heading else text


def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` cut at a line (or word) boundary to at most about `limit` characters, marked with …."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    at = cut.rfind("\n")
    if at < limit // 2:
        at = cut.rfind(" ")
    return (cut[:at] if at > 0 else cut).rstrip() + " …"


# -- loading, cached ------------------------------------------------------------------------------------------
_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], tuple[Any, Library]] = OrderedDict()


def load(folders: Sequence[Path] = (), *, shipped: Path | None = SHIPPED) -> Library:
    """The runbooks of the shipped folder (unless `shipped` is None) and `folders`, indexed. Cached: the files
    are listed on every call, and read and indexed again only when one was added, removed or changed."""
    sources: list[tuple[Path, str]] = [(shipped, SHIPPED_SOURCE)] if shipped is not None else []
    sources += [(Path(f), Path(f).expanduser().name or str(f)) for f in folders]
    listed: list[_File] = []
    problems: list[str] = []
    for folder, source in sources:
        files, trouble = _scan(folder, source)
        listed += files
        problems += trouble
    key = tuple(str(folder) for folder, _ in sources)
    fingerprint = (tuple((f.id, f.source, str(f.path), f.version) for f in listed), tuple(problems))
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            _cache.move_to_end(key)
            return cached[1]
    for line in problems:
        logger.warning("%s", line)
    library = Library.build(_choose(listed), problems)
    with _lock:
        _cache[key] = (fingerprint, library)
        _cache.move_to_end(key)
        while len(_cache) > CACHED_LIBRARIES:
            _cache.popitem(last=False)
    return library


def _choose(files: list[_File]) -> list[Runbook]:
    """Read and parse; an operator's runbook replaces a shipped one of the same id, the first operator
    folder wins over later ones."""
    chosen: dict[str, Runbook] = {}
    for f in files:
        previous = chosen.get(f.id)
        if previous is not None and previous.source != SHIPPED_SOURCE:
            logger.warning("runbook %s skipped: id %s already comes from folder %s", f.path, f.id, previous.source)
            continue
        text = _read(f)
        if text is None:
            continue
        if previous is not None:
            logger.info("runbook %s from folder %s replaces the shipped one", f.id, f.source)
        chosen[f.id] = parse(text, f.id, f.source)
    return list(chosen.values())
