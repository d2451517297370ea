"""Keep credentials on the server: the one masking step for every text and object that leaves it.

- `mask_text(text)`: credential-looking values in free text (logs, events, YAML/JSON text, command lines, diffs).
- `redact(obj)`: a masked deep copy of a JSON-like value (Kubernetes objects, lists of them, tool results).
- `sensitive_name(name)`: whether a key, env var, header or annotation name holds a credential.
- `hidden(obj, pointer)`: whether `redact` masks the value at a JSON pointer, or anything under it.
- `MaskingFilter` / `mask_log_record`: log records leave with their message rendered, then masked.

A name is sensitive when one of its words (split at camelCase, `_`, `-`, `.`, `/`) is a credential noun and its
last word is not a reference or setting word: `DB_PASSWORD` and `clientSecret` hold credentials; `SECRET_NAME`,
`PASSWORD_FILE`, `TOKEN_TTL_SECONDS`, `AUTH_ENABLED` and `AWS_ACCESS_KEY_ID` only name, locate or configure one
(an access key id's AKIA/ASIA value is still masked by its shape). Values that plainly hold nothing (true/false,
`$(VAR)` references, file paths, values masked already) stay readable under any name.

Texts are scanned with re2, which never backtracks, in a few passes (a shape whose unfinished match can run long
gets a pass of its own, so no search reads on past it again and again); values are parsed in Python from where a
key ends, each byte at most once. So masking takes time linear in the text. Masked output is stable: masking it
again changes nothing.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import re2

MASK = "***"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_QUALIFIERS = _words(  # "<qualifier> key" holds a credential; "key" alone (a label or toleration key) does not
    "api access private secret signing sign session encryption decryption master client account storage shared "
    "ssh gpg pgp rsa ecdsa ed25519 auth license licence app consumer hmac tls ssl root role subscription primary "
    "secondary admin deploy webhook jwt crypto aes"
)
_REFERENCE = _words(  # a last word that names, locates, sizes or configures a credential without holding it
    "name names filename file files path paths dir directory folder mount volume ref refs reference arn url urls uri "
    "uris endpoint endpoints host hosts hostname port addr address server service issuer audience subject ttl seconds "
    "secs sec ms minutes mins hours days duration timeout interval period age lifetime expiry expires expiration in "
    "at rotation enabled disabled enable disable required optional type types kind class mode method scheme strategy "
    "policy provider plugin backend engine store manager realm domain scope scopes format encoding algorithm alg "
    "length len size bytes bits count limit max min retries attempts id ids uid version header headers param params "
    "parameter field fields label labels selector annotation prefix suffix pattern regex template config namespace "
    "env var variable stdin user username email secure httponly samesite status state source location checksum "
    "digest fingerprint sha"
)
_NOT_FIRST = _words("existing checksum enable disable use allow require skip no without")  # existingSecret: a name
_NOT_PASS = _words("bypass compass encompass overpass underpass surpass trespass")
_CURSORS = _words("continue page next cursor pagination resume sync")  # continue_token pages, it opens nothing
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def sensitive_name(name: str) -> bool:
    """Whether a key, env var, header or annotation name holds a credential (see the module doc)."""
    return _sensitive(name[-200:])  # a longer "name" is no identifier; its end decides, and the cache stays small


@lru_cache(maxsize=8192)
def _sensitive(name: str) -> bool:
    words = [w.lower() for w in _WORD.findall(name)]
    if not words or words[-1] in _REFERENCE or words[0] in _NOT_FIRST:
        return False
    return any(_noun(w, words[i - 1] if i else "", i == len(words) - 1) for i, w in enumerate(words))


def _noun(word: str, prev: str, last: bool) -> bool:
    if any(n in word for n in ("password", "passwd", "passphrase", "credential")):
        return True
    if word in ("pw", "dsn", "cred", "creds") or word.endswith(("pwd", "pass")):
        return word not in _NOT_PASS  # pgpass, DB_PASS; not bypass
    if "secret" in word:
        return word not in ("secrets", "secretary")  # plural: the Kubernetes resource, or a count of them
    if word.endswith("token"):
        return prev not in _CURSORS
    if word.endswith(("key", "keys")):
        return (prev if word in ("key", "keys") else word.rstrip("s")[:-3]) in _QUALIFIERS
    if word in ("string", "strings", "str"):
        return prev in ("connection", "conn")
    if word.startswith("connectionstring") or word == "connstr":
        return True
    return last and (
        word.endswith(("auth", "cookie", "cookies")) or word in ("authorization", "bearer", "sig", "signature")
    )


# ---- scanning patterns: re2 over the text's UTF-8 bytes read as Latin-1 (one byte, one character)
def _b64_prefix(text: str) -> str:  # what every base64 encoding of a text that starts so starts with
    return base64.b64encode(text.encode())[: len(text) // 3 * 4].decode()


_B64_OPENINGS = [f"-----BEGIN {k}PRIVATE KEY" for k in ("", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ")] + [
    '{"auths":', '{\n  "auths":', '{\n\t"auths":', '{"type":"service_account"', '{\n  "type": "service_account"'
]  # fmt: skip


def _table(text: str) -> list[tuple[str, str]]:
    """The (prefix, rest) pairs of a table of shapes, one "prefixes: the rest  # what" a line."""
    rows = [line.split("#")[0].partition(": ") for line in text.strip().splitlines()]
    return [(prefix, rest.strip()) for prefixes, _, rest in rows for prefix in prefixes.split()]


def _tokens(shapes: list[tuple[str, str]]) -> str:
    return "(?P<tok>" + "|".join(rf"\b{re2.escape(prefix)}{rest}" for prefix, rest in shapes) + ")"


# Credentials known by their shape, masked wherever they appear. An unfinished match of each is a few dozen bytes
# at most (JWTs and SendGrid keys, whose first part runs on, are in _FAMILIES). Two tables, two re2 passes: re2
# builds its automaton while it reads, and one automaton for all of them costs far more to build.
_CLOUD_TOKENS = _table(r"""
    AKIA ASIA: [A-Z0-9]{16}\b                                           # AWS access key ids
    xoxa- xoxb- xoxp- xoxo- xoxs- xoxr-: [A-Za-z0-9-]{10,}              # Slack
    xapp-: [0-9]-[A-Za-z0-9-]{10,}                                      # Slack app-level
    ghp_ gho_ ghu_ ghs_ ghr_: [A-Za-z0-9]{30,}                          # GitHub
    github_pat_: [A-Za-z0-9_]{30,}                                      # GitHub fine-grained
    glpat- gldt- glrt- glptt- glcbt- glsoat- glft- glimt-: [A-Za-z0-9_-]{20,}  # GitLab
""")
_API_TOKENS = _table(r"""
    sk-: [A-Za-z0-9_-]{20,}                                             # OpenAI, Anthropic (checked in _shape)
    sk_live_ rk_live_ sk_test_ rk_test_: [A-Za-z0-9]{10,}               # Stripe
    whsec_: [A-Za-z0-9+/=]{20,}                                         # Stripe webhook
    SK: [0-9a-fA-F]{32}\b                                               # Twilio API key
    npm_ hf_: [A-Za-z0-9]{30,}                                          # npm, Hugging Face
    AIza: [0-9A-Za-z_-]{30,}                                            # Google API key
    pypi-: [A-Za-z0-9_-]{50,}                                           # PyPI
    dckr_pat_ hvs.: [A-Za-z0-9_-]{20,}                                  # Docker Hub, Vault
""")
_B64_BLOBS = [(_b64_prefix(t), "[A-Za-z0-9+/=]*") for t in _B64_OPENINGS]  # base64 private keys, docker/GCP JSON
_HOOKS = [f"hooks.slack.com/{p}/" for p in ("services", "workflows", "triggers")] + [
    f"{host}.com/api/webhooks/" for host in ("discord", "discordapp")
]


def _re2(pattern: str, capture: bool = True) -> tuple[Any, dict[str, int]]:
    """Compiled for bytes read as Latin-1; without groups, re2 finds a match with its DFA alone (much faster)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    compiled = re2.compile((pattern if capture else re.sub(r"\(\?P<\w+>", "(?:", pattern)).encode(), options)
    return compiled, {name.decode(): i for name, i in compiled.groupindex.items()}


_FAMILIES = [  # (what the text must contain, shapes): each family is one re2 pass. re2 finds the leftmost match, so
    # an unfinished match that runs long (a JWT's first part, a URL's user:password) makes it read on to where that
    # one ends, for every later match of another shape: only shapes that never do so to each other share a pass.
    ("", r"(?P<pem>-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----)(?:[A-Za-z0-9+/=\s\\:,*]|-[A-Za-z0-9])*"
     r"(?P<pemend>-----END[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----)?"  # a PEM key, also when cut short
     r"|" + _tokens(_B64_BLOBS) +
     r"|(?P<hook>" + "|".join(re2.escape(h) for h in _HOOKS) + r")[A-Za-z0-9/_-]+"
     r"|(?P<scheme>\b(?i:bearer|basic)[ \t]+)(?P<bt>[A-Za-z0-9._~+/-]+=*)"),  # a bare "Bearer <token>"
    ("", _tokens(_CLOUD_TOKENS)),
    ("", _tokens(_API_TOKENS)),
    ("eyJ", r"(?P<tok>\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,3})"),  # JWT, JWE
    ("SG.", r"(?P<tok>\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,})"),  # SendGrid
    ("://", r"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s:@/?#\"'<>]*:)[^\s/?#\"'<>]+@"),  # scheme://user:pw@
    ("@", r"(?P<dsn>\b[\w.-]+:)[^\s@/:]+(?P<dsnend>@(?:tcp|unix)\()"),  # Go DSN user:password@tcp(host)
]  # fmt: skip
_SHAPES = [(need.encode(), _re2(source, capture=False)[0], *_re2(source)) for need, source in _FAMILIES]
_COMMAND, _ = _re2(  # command lines (and config lines) whose arguments _command reads
    r"(?i)\b(?:mysql\w*|mariadb[\w-]*|sshpass|redis-cli|login|requirepass|masterauth)\b"
    r"|(?:^|[\s'\"=])(?:-u|--user|--proxy-user|-pass)",
    capture=False,
)
_NOUN = (  # what every sensitive name contains: these find candidates, sensitive_name decides
    r"(?:pass|pw|secret|token|cred|dsn|auth|bearer|cookie|sig|conn(?:ection)?[_.-]?str"
    rf"|(?:{'|'.join(sorted(_QUALIFIERS))})[_.-]{{0,2}}key)"
)
_FLAGS, _FG = _re2(  # --password X, <password>X</password>, and {name: DB_PASSWORD, value: X} in YAML or JSON
    rf"(?i)(?:^|[\s\"'=,\[(])(?P<flag>--?[\w.-]*{_NOUN}[\w.-]*)[ \t]+"
    rf"|<(?P<tag>[\w.:-]*{_NOUN}[\w.:-]*)(?:[ \t][^<>\n]{{0,200}})?>"
    rf"|\bname\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?P<pname>[\w.-]*{_NOUN}[\w.-]*)\\?[\"']?[ \t]*"
    r"(?:,[ \t]*|\r?\n[ \t]*)\\?[\"']?(?P<vkey>value)\\?[\"']?[ \t]*[:=][ \t]*"
)
_KEYS, _KG = _re2(rf"(?i)(?P<key>[\w.-]*{_NOUN}[\w.-]*)(?P<q>\\?[\"'])?(?P<sep>[ \t]*(?:=>|:=|[:=])[ \t]*)")  # key=X
_PARTS = ("flag", "pname", "tag", "key", "vkey", "q", "sep")  # the groups _value reads

# ---- value parsing: Python re anchored where a key ends; no pattern can match one text in two ways, so linear
_VALUE = re.compile(
    rb'"(?P<dq>[^"\\\n]*(?:\\.[^"\\\n]*)*)"?|\\"(?P<eq>[^"\\\n]*(?:\\[^"\n][^"\\\n]*)*)(?:\\")?'
    rb"|'(?P<sq>[^'\n]*)'?|(?P<bare>[^\s,;&\"'<>(){}\[\]\\`]+)"
)
_SCHEME = re.compile(
    rb"(?i)(?:bearer|basic|token|digest|negotiate|ntlm|bot|apikey|sso-key|ssws|aws4-hmac-sha256)[ \t]+"
)
_FIELD_ERROR = re.compile(
    rb"(Required value|Forbidden|Too long|Too many|Internal error)\b"
    rb"|(?:Invalid|Unsupported|Duplicate) value: |Not found: "
)  # Kubernetes field errors: "spec.password: Required value" says nothing, "Invalid value: X" quotes X
_PROSE = re.compile(  # what follows "token: " in an error message, rather than a token: the next "x:" of an error
    rb"[a-z][a-z0-9/._-]{0,40}:|(?:a|an|the|is|was|has|not|no|none|nil|missing|invalid|expired|unexpected|unknown"
    rb"|unable|cannot|failed|error|denied|forbidden|unauthorized|required|malformed|empty|incorrect|wrong|mismatch"
    rb"|timeout|timed|context|deadline|connection|dial|read|open|eof|permission|rejected|revoked|refused|waiting"
    rb"|server|message|status|code|request|response|rpc|http|https|x509|tls|retrying|using|for|from|of|in|on)"
)  # chain, or one of the words errors are made of
_SEGMENT_END = re.compile(rb"[\n;&|]")
_ARGUMENT = re.compile(rb"(?<![^ \t\n;&|'\"])['\"]?-|requirepass|masterauth|password")
_BLOCK = re.compile(rb"([|>][-+0-9]{0,3})?[ \t]*(?:#[^\n]*)?\r?\n")  # `key: |` (a YAML block) or `key:` (a line break)
_STRUCTURE = re.compile(rb"- |[{\[&*!]|[^\s:#]+:(?:\s|$)")  # a YAML line that opens a list or mapping
_PLAIN = re.compile(  # values that hold nothing: booleans, references to variables or files, values masked already
    rb"(?i)true|false|yes|no|on|off|null|none|nil|undefined|\**|<[^<>\n]*>|\$\{[\w.:-]*\}|\$\([\w.-]*\)"
    rb"|\$[A-Za-z_]\w*|\{\{[^{}\n]*\}\}|%[-+#0-9.]*[sdvqr]|(?:~|\.{1,2})?/[\w.@+/-]*"
)


def _trie(words: list[str]) -> str:
    """One regex matching any of `words`, branching one character at a time (a quick search for many words)."""
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here: longer ones add nothing

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        return "" if "" in node or not alts else alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"

    return emit(tree)


_PREFIXES = [prefix.lower() for prefix, _ in _CLOUD_TOKENS + _API_TOKENS + _B64_BLOBS]
_TRIGGER = re.compile(  # every pattern above needs one of these (in lower case); texts without any pass through
    _trie([*_words("pass pw secret token cred dsn auth bearer basic cookie sig conn key :// @tcp( @unix( mysql mariadb "
                   "sshpass redis-cli login -u eyj sg."), *_HOOKS, *_PREFIXES])
)  # fmt: skip


def mask_text(text: str) -> str:
    """Mask credential-looking values inside free text; the rest stays as it is."""
    if not text or (len(text) < 4096 and not _TRIGGER.search(text.lower())):
        return text
    data = text.encode("utf-8", "surrogatepass")
    masked = _commands(_shapes(data))
    if b"-" in masked or b"<" in masked or b"ame" in masked or b"AME" in masked:  # what _FLAGS needs
        masked = _assignments(masked, _FLAGS, _FG)
    if b"=" in masked or b":" in masked:
        masked = _assignments(masked, _KEYS, _KG)
    return text if masked == data else masked.decode("utf-8", "surrogatepass")


def _matches(pattern: Any, data: bytes) -> Iterator[list[tuple[int, int]]]:
    """The group spans of each match, left to right: re2's own Match, as the wrapper's finditer calls it
    (google-re2 1.x), without the Match objects that cost more than the search."""
    regexp, pos, end = pattern._regexp, 0, len(data)
    while pos <= end:
        spans = regexp.Match(re2._Anchor.UNANCHORED, data, pos, end)
        if spans[0][0] < 0:
            return
        yield spans
        pos = spans[0][1] + (spans[0][1] == spans[0][0])


def _shapes(data: bytes) -> bytes:
    """Each family's matches found by span first (re2's DFA alone); groups are read from at most 4 kB of each
    (re2 reads groups slowly: a 1 MB key would cost 100 ms), from the whole match only when the cut one fails."""
    for need, find, read, groups in _SHAPES:
        if need not in data:
            continue
        out: list[bytes] = []
        cursor = 0
        for (start, end), *_ in _matches(find, data):
            spans = read._regexp.Match(re2._Anchor.ANCHOR_START, data, start, min(end, start + 4096))
            if spans[0][0] < 0:
                spans = read._regexp.Match(re2._Anchor.ANCHOR_BOTH, data, start, end)
            g = {name: data[spans[i][0] : spans[i][1]] if spans[i][0] >= 0 else None for name, i in groups.items()}
            if g.get("pem") and end > spans[0][1] and data[end - 5 : end] == b"-----":  # its END line, past the cut
                g["pemend"] = data[data.rfind(b"-----END", start, end) : end]
            out += (data[cursor:start], _shape(data[start:end], g))
            cursor = end
        data = b"".join([*out, data[cursor:]]) if out else data
    return data


def _shape(whole: bytes, g: dict[str, Any]) -> bytes:
    mask = MASK.encode()
    if g.get("pem"):
        return g["pem"] + mask + (g["pemend"] or b"")
    if g.get("tok"):  # an sk- word must look random (an upper-case letter and a digit) unless its prefix says more
        tok = g["tok"]
        known = tok[3:].startswith((b"proj-", b"ant-", b"svcacct-", b"admin-")) or not tok.startswith(b"sk-")
        return mask if known or (re.search(rb"[A-Z]", tok) and re.search(rb"[0-9]", tok)) else tok
    if g.get("hook") or g.get("url"):
        return (g.get("hook") or g["url"]) + mask + (b"@" if g.get("url") else b"")
    if g.get("dsn"):
        return g["dsn"] + mask + g["dsnend"]
    body = g["bt"].rstrip(b"=")  # "Bearer authentication required", "Basic realm" are words, not credentials
    return whole if (body.isalpha() and body[1:].islower()) or len(body) < 6 else g["scheme"] + mask


def _commands(data: bytes) -> bytes:
    """Command lines in text (up to a newline, ;, & or |): their words go through _command."""
    out: list[bytes] = []
    cursor = done = 0  # copied up to `cursor`; segments read up to `done`
    for (_, hit), *_ in _matches(_COMMAND, data):
        hit -= 1  # the trigger's last byte: inside its segment
        if hit < done:
            continue
        start = max(done - 1, *(data.rfind(c, done, hit) for c in (b"\n", b";", b"&", b"|"))) + 1
        stop = _SEGMENT_END.search(data, hit)
        done = stop.start() if stop else len(data)
        if _ARGUMENT.search(data, start, done):  # a flag, or a word that takes a credential
            pieces = re.split(r"([ \t]+)", data[start:done].decode("latin-1"))
            pieces[::2] = _command(pieces[::2], None)
            out += (data[cursor:start], "".join(pieces).encode("latin-1"))
            cursor = done
    return b"".join([*out, data[cursor:]]) if out else data


def _assignments(data: bytes, pattern: Any, index: dict[str, int]) -> bytes:
    out: list[bytes] = []
    cursor, groups = 0, [index.get(n, -1) for n in _PARTS]
    names = [i for i in groups[:4] if i >= 0]  # the groups that hold the name (one per alternative)
    for spans in _matches(pattern, data):
        start, end = next(spans[i] for i in names if spans[i][0] >= 0)
        if spans[0][0] < cursor or not sensitive_name(data[start:end].decode("latin-1")):
            continue  # inside a value already parsed, or a name that holds nothing
        found = _value(data, [spans[i] if i >= 0 else (-1, -1) for i in groups], spans[0][1])
        if found:
            start, end, repl = found
            out += (data[cursor:start], repl)
            cursor = end
    return b"".join([*out, data[cursor:]]) if out else data


def _value(data: bytes, parts: list[tuple[int, int]], v: int) -> tuple[int, int, bytes] | None:
    """Where the value after a credential name (ending at `v`) starts and ends, and what replaces it (itself
    when it holds nothing); None when no value follows."""
    flag, _, tag, key, vkey, q, sep = (data[s:e] if s >= 0 else None for s, e in parts)
    sep, key_at = sep or b"", parts[3][0] if key else parts[4][0]
    colon = (b":" in sep and b":=" not in sep) or vkey is not None
    if flag and data[v : v + 1] == b"-":
        return None  # --password-stdin --other: a flag, not a value
    if tag:  # <password>X</password>: X runs to the next tag
        end = data.find(b"<", v)
        end = len(data) if end < 0 else end
        return None if _plain(data[v:end]) else (v, end, MASK.encode())
    # `volume "creds" : secret "db" not found` is a Kubernetes message, `repo/password-reset:v3` an image
    image = sep == b":" and key is not None and (b"-" in key or data[key_at - 1 : key_at] == b"/")
    if key and colon and q is None and (sep[0] in b" \t" or image):
        return None
    field = _FIELD_ERROR.match(data, v) if colon else None
    if field and field.group(1):
        return v, field.end(), field.group(0)
    v = field.end() if field else v
    scheme = _SCHEME.match(data, v)
    v = scheme.end() if scheme else v
    line = _line_start(data, key_at) if colon and q is None and key_at >= 0 else None
    block = _BLOCK.match(data, v) if line is not None else None
    if block and line is not None:
        return _block(data, block.end(), line, scalar=block.group(1) is None)
    value = _VALUE.match(data, v)
    if not value or not value.lastgroup:
        return None
    start, end = value.span(value.lastgroup)
    if value.lastgroup == "bare":
        if key and colon and sep[0] in b" \t":
            return v, end, data[v:end]  # "key" : value unquoted: a message, not JSON
        if line is not None:  # YAML `key: words to the end of the line  # comment`
            eol = data.find(b"\n", start)
            end = start + len(data[start : len(data) if eol < 0 else eol].split(b" #", 1)[0].rstrip())
        elif colon and _PROSE.fullmatch(data[start:end].lower()) and re.match(rb"[ \t]+\S", data[end : end + 2]):
            return v, end, data[v:end]  # "fetch token: unexpected status", "token: crypto/rsa: error": prose
    return (v, end, data[v:end]) if _plain(data[start:end]) else (start, end, MASK.encode())


def _plain(value: bytes) -> bool:
    return _PLAIN.fullmatch(value.strip()) is not None


def _line_start(data: bytes, at: int) -> int | None:
    """The column of `at` when only indentation (or a YAML list dash) precedes it on its line."""
    window = data[max(0, at - 80) : at]
    head = window[window.rfind(b"\n") + 1 :]
    return len(head) if (len(head) < len(window) or at <= 80) and not head.strip(b" \t-") else None


def _block(data: bytes, pos: int, indent: int, scalar: bool) -> tuple[int, int, bytes] | None:
    """A YAML block scalar after `key: |` (or, when `scalar`, a plain one on the lines after `key:`): its lines,
    those indented deeper than the key, become one mask."""
    begin, first, end = pos, -1, pos
    while pos < len(data):
        eol = data.find(b"\n", pos)
        eol = len(data) if eol < 0 else eol
        text = data[pos:eol]
        if text.strip() and not (scalar and text.lstrip()[:1] == b"#"):  # a comment is no plain scalar's text
            depth = len(text) - len(text.lstrip(b" \t"))
            if depth <= indent or (scalar and first < 0 and _STRUCTURE.match(text, depth)):
                break
            first, end = depth if first < 0 else first, eol
        pos = eol + 1
    return None if first < 0 else (begin, end, b" " * first + MASK.encode())


# ---- objects
def redact(obj: Any) -> Any:
    """A masked deep copy of a JSON-like value: Secret data keeps only its keys and sizes, credential-named values
    become `***`, every other string goes through `mask_text`, at any depth (walked without recursion)."""
    root: list[Any] = [None]
    todo: list[tuple[Any, Any, Any, str, str]] = [(obj, root, 0, "", "")]
    while todo:
        node, parent, slot, key, kind = todo.pop()
        parent[slot] = _copy(node, key, kind, todo)
    return root[0]


def _copy(node: Any, key: str, kind: str, todo: list[tuple[Any, Any, Any, str, str]]) -> Any:
    """`node` masked, its containers left to `todo`; `key` is where it sits, `kind` what its parent lists."""
    if isinstance(node, str):
        return mask_text(node)
    if isinstance(node, (list, tuple)):
        items = _args(node)
        todo.extend((item, items, i, key, kind) for i, item in enumerate(node) if isinstance(item, (dict, list, tuple)))
        return items
    if not isinstance(node, dict):
        return node
    own = node.get("kind", kind)
    own = own if isinstance(own, str) else kind
    if not own and "type" in node and isinstance(node.get("metadata"), dict):  # a Secret listed without its kind
        own = "Secret" if isinstance(node.get("data"), dict) or isinstance(node.get("stringData"), dict) else ""
    pair = node.get("name", node.get("key")) if isinstance(node.get("value"), str) else None  # env var, header
    special = (
        _special(node, key, own) if own in ("Secret", "ConfigMap") or key == "annotations" or "args" in node else {}
    )
    out: dict[Any, Any] = {}
    for k, v in node.items():
        if special and k in special:
            out[k] = special[k]
        elif isinstance(v, str):
            name = _annotation_name(str(k)) if key == "annotations" else str(k)
            name = pair if k == "value" and isinstance(pair, str) else name
            out[k] = MASK if sensitive_name(name) and not _plain(v.encode("utf-8", "surrogatepass")) else mask_text(v)
        elif isinstance(v, (dict, list, tuple)):
            out[k] = None
            todo.append((v, out, k, str(k), own[:-4] if k == "items" and own.endswith("List") else ""))
        else:
            out[k] = v
    return out


def _special(node: dict[Any, Any], key: str, kind: str) -> dict[Any, Any]:
    """Values decided by the object's kind or neighbours: Secret data, ConfigMap data, last-applied, args."""
    done: dict[Any, Any] = {LAST_APPLIED: "<omitted>"} if key == "annotations" and LAST_APPLIED in node else {}
    for part in ("data", "stringData", "binaryData") if kind in ("Secret", "ConfigMap") else ():
        values = node.get(part)
        if isinstance(values, dict) and part != ("binaryData" if kind == "Secret" else "stringData"):
            done[part] = {
                k: _size(v) if kind == "Secret" or sensitive_name(str(k)) else redact(v) for k, v in values.items()
            }
    command, args = node.get("command"), node.get("args")
    if isinstance(command, list) and isinstance(args, list):  # mysql in command, -pX in args
        done["args"] = redact(_args([*command, *args])[len(command) :])
    return done


def _annotation_name(name: str) -> str:
    """example.com/api-token → api-token; checksum/secret stays whole; the *-secret settings of Kubernetes
    controllers (nginx.ingress.kubernetes.io/auth-secret) name a Secret."""
    domain, _, rest = name.rpartition("/")
    if domain.endswith("kubernetes.io") and rest.endswith("secret"):
        return rest + "-name"
    return rest if "." in domain else name


def _size(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text if re.fullmatch(r"<redacted: \d+ chars>", text) else f"<redacted: {len(text)} chars>"


_MYSQL = _words("mysql mysqladmin mysqldump mysqlimport mysqlcheck mysqlshow mysqlpump mysqlsh mariadb mariadb-dump")
_FLAG = re.compile(r"--?[A-Za-z][\w.-]*")
_PORTS = re.compile(r"[\d.:]+(?:/(?:tcp|udp|sctp))?")


def _args(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    """A list's strings (container args or command) masked: alone, or as a credential split over arguments."""
    words = _command([w if isinstance(w, str) else "" for w in items], mask_text)
    return [w if isinstance(item, str) else item for w, item in zip(words, items, strict=True)]


def _command(words: list[str], each: Callable[[str], str] | None) -> list[str]:
    """The words of a command line with credentials masked: `--password X`, `-u user:X`, `mysql ... -pX`,
    `-u user -pX`, `sshpass -p X`, `docker login -p X`, `redis-cli -a X`, `-passin pass:X`, `requirepass X`
    (redis.conf), `machine h login u password X` (.netrc). Other words go through `each`, when given."""
    tools = {w.strip("'\"").rsplit("/", 1)[-1].lower() for w in words if not w.startswith(("-", "'-", '"-'))}
    takes = (
        tools & _MYSQL or "sshpass" in tools,
        tools & {"sshpass", "login"},
        "redis-cli" in tools,
        "machine" in tools,
    )
    out = list(words)
    for i, word in enumerate(words):
        prev, core = words[i - 1].strip("'\"") if i else "", word.strip("'\"")
        if core[:1] != "-" and prev[:1] != "-" and prev not in ("requirepass", "masterauth", "password"):
            out[i] = each(word) if each else word  # no rule below reads this word
            continue
        user = core.partition("=")[2] if core.startswith(("--user=", "--proxy-user=")) else core
        user = user[2:] if core.startswith("-u") and ":" in core else user  # -uadmin:X
        if _FLAG.fullmatch(prev) and sensitive_name(prev) and not _FLAG.fullmatch(core) and _holds(core):
            out[i] = MASK  # --password X
        elif (prev in ("-u", "-U", "--user", "--proxy-user") or user != core) and ":" in user:
            name, _, pw = user.partition(":")  # curl -u user:X, but not docker -u 1000:1000 or root:root
            plain = not _holds(pw) or pw == name or (pw.isdigit() and name.isdigit())
            out[i] = word if plain else core[: len(core) - len(pw)] + MASK
        elif core[:2] == "-p" and _holds(core[2:]) and (takes[0] or _after_user(words, i, core)):
            out[i] = "-p" + MASK  # mysql -pX, sshpass -pX, -u user -pX (not docker -u app -p80:80)
        elif (
            (prev == "-p" and takes[1])
            or (prev == "-a" and takes[2])
            or prev in ("requirepass", "masterauth")
            or (prev == "password" and takes[3])
        ) and _holds(core):
            out[i] = MASK  # sshpass -p X, docker login -p X, redis-cli -a X, requirepass X, .netrc password X
        elif core.startswith("pass:") and prev.startswith("-pass") and _holds(core[5:]):
            out[i] = "pass:" + MASK  # openssl -passin pass:X
        elif each:
            out[i] = each(word)
    return out


def _after_user(words: list[str], i: int, core: str) -> bool:
    """-pX right after -u user (or -uuser), unless X is a port mapping."""
    prev, before = words[i - 1] if i else "", words[i - 2] if i > 1 else ""
    return (before == "-u" or prev.startswith("-u")) and not _PORTS.fullmatch(core[2:])


def _holds(value: str) -> bool:
    """Whether a command-line value may hold a credential (not empty, a boolean, a $VAR or a path)."""
    return bool(value.strip("'\"")) and not _plain(value.strip("'\"").encode("utf-8", "surrogatepass"))


def hidden(before: Any, pointer: str) -> bool:
    """Whether `redact(before)` masks the value at JSON pointer `pointer` (RFC 6901) or anything under it."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer[:80]!r} must start with '/'")
    plain, shown = before, redact(before)
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(plain, dict) and part in plain:
            plain, shown = plain[part], shown.get(part) if isinstance(shown, dict) else None
        elif isinstance(plain, list) and re.fullmatch(r"0|[1-9][0-9]*", part) and int(part) < len(plain):
            plain, shown = plain[int(part)], shown[int(part)] if isinstance(shown, list) else None
        else:  # no such value: only a masked string hides what would lie under it
            return isinstance(plain, str) and plain != shown
    return bool(plain != shown)


def mask_log_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the record's message with its args, mask it and drop the args; mask its traceback text too."""
    try:
        message = record.getMessage()
    except Exception:  # a format that does not fit its args: keep both, masked
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = mask_text(str(message)), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)
    return record


class MaskingFilter(logging.Filter):
    """Installed on every log handler: a record leaves with its message rendered and masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_log_record(record)
        return True
