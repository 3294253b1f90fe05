"""Tokenizer access for the trainer.

On the GPU host the `tokenizers` package is used. Where it is missing (the development machine), a slow
pure-Python byte-level BPE reads the same tokenizer.json: the pre-tokenizer's Unicode classes (\\p{L} ...)
are expanded into explicit ranges for Python's `re`. It reproduces tokenizer_vectors.json and exists so
that the whole pipeline can be smoke-tested without `tokenizers`.
"""
import json
import re
import sys
import unicodedata

_CATS = {"L": ("Lu", "Ll", "Lt", "Lm", "Lo"), "N": ("Nd", "Nl", "No"),
         "P": ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"), "S": ("Sm", "Sc", "Sk", "So"), "M": ("Mn", "Mc", "Me")}
_CLASS_CACHE = {}


def _esc(cp):
    return "\\U%08x" % cp


def _class_body(letter):
    """Ranges of every code point whose general category starts with `letter`, as the inside of [...]."""
    if letter in _CLASS_CACHE:
        return _CLASS_CACHE[letter]
    cats = set(_CATS[letter])
    parts, start, prev = [], None, None
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            inside = False
        else:
            inside = unicodedata.category(chr(cp)) in cats
        if inside and start is None:
            start = cp
        if not inside and start is not None:
            parts.append(_esc(start) if start == prev else _esc(start) + "-" + _esc(prev))
            start = None
        prev = cp
    if start is not None:
        parts.append(_esc(start) + "-" + _esc(prev))
    _CLASS_CACHE[letter] = "".join(parts)
    return _CLASS_CACHE[letter]


def _translate(pattern):
    """Rewrite \\p{X} (inside or outside brackets) for Python's re."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern.startswith("\\p{", i):
            letter = pattern[i + 3]
            assert pattern[i + 4] == "}", pattern
            body = _class_body(letter)
            out.append(body if depth else "[" + body + "]")
            i += 5
            continue
        if ch == "\\":
            out.append(pattern[i:i + 2]); i += 2; continue
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
        out.append(ch); i += 1
    return "".join(out)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class PyBPE:
    """Byte-level BPE with the Split/ByteLevel pre-tokenizer sequence of DeepSeek-V3's tokenizer.json."""

    def __init__(self, path):
        t = _read_json(path)
        m = t["model"]
        if m["type"] != "BPE":
            raise ValueError(f"{path}: model type {m['type']} is not BPE")
        self.vocab = m["vocab"]
        merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in m["merges"]]
        self.ranks = {p: i for i, p in enumerate(merges)}
        self.splits = []
        for p in t["pre_tokenizer"]["pretokenizers"]:
            if p["type"] == "Split":
                if p["behavior"] != "Isolated" or p.get("invert"):
                    raise ValueError(f"{path}: unsupported Split {p}")
                self.splits.append(re.compile(_translate(p["pattern"]["Regex"])))
            elif p["type"] != "ByteLevel" or p.get("use_regex") or p.get("add_prefix_space"):
                raise ValueError(f"{path}: unsupported pre-tokenizer {p}")
        self.added = {a["content"]: a["id"] for a in t["added_tokens"]}
        self.added_re = re.compile("|".join(re.escape(s) for s in sorted(self.added, key=len, reverse=True)))
        self.b2u = _bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.id2tok = {i: s for s, i in self.vocab.items()}
        for s, i in self.added.items():
            self.id2tok[i] = s
        self.cache = {}

    def _pieces(self, text):
        pieces = [text]
        for rx in self.splits:
            nxt = []
            for p in pieces:
                pos = 0
                for mt in rx.finditer(p):
                    if mt.start() > pos:
                        nxt.append(p[pos:mt.start()])
                    if mt.end() > mt.start():
                        nxt.append(mt.group())
                    pos = mt.end()
                if pos < len(p):
                    nxt.append(p[pos:])
            pieces = nxt
        return pieces

    def _bpe(self, word):
        ids = self.cache.get(word)
        if ids is not None:
            return ids
        sym = list(word)
        while len(sym) > 1:
            best, bi = None, -1
            for i in range(len(sym) - 1):
                r = self.ranks.get((sym[i], sym[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = sym[bi], sym[bi + 1]
            out, i = [], 0
            while i < len(sym):
                if i < len(sym) - 1 and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b); i += 2
                else:
                    out.append(sym[i]); i += 1
            sym = out
        ids = [self.vocab[s] for s in sym]
        if len(self.cache) < 500000:
            self.cache[word] = ids
        return ids

    def _encode_plain(self, text):
        ids = []
        for p in self._pieces(text):
            ids.extend(self._bpe("".join(self.b2u[b] for b in p.encode("utf-8"))))
        return ids

    def encode(self, text):
        ids, pos = [], 0
        for mt in self.added_re.finditer(text):
            if mt.start() > pos:
                ids.extend(self._encode_plain(text[pos:mt.start()]))
            ids.append(self.added[mt.group()])
            pos = mt.end()
        if pos < len(text):
            ids.extend(self._encode_plain(text[pos:]))
        return ids

    def decode(self, ids):
        out, buf = [], bytearray()
        for i in ids:
            s = self.id2tok[int(i)]
            if s in self.added:
                out.append(buf.decode("utf-8", "replace")); buf = bytearray(); out.append(s)
            else:
                buf.extend(self.u2b[c] for c in s)
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)


class Tok:
    """encode_batch/decode over `tokenizers` when importable, else PyBPE."""

    def __init__(self, path, force_python=False):
        self.path = path
        self.fast = None
        if not force_python:
            try:
                from tokenizers import Tokenizer
                self.fast = Tokenizer.from_file(path)
            except ImportError:
                self.fast = None
        self.slow = None if self.fast else PyBPE(path)
        self.kind = "tokenizers" if self.fast else "pure-python BPE (slow fallback)"
        spec = {a["content"]: a["id"] for a in _read_json(path)["added_tokens"]}
        self.specials = spec

    def encode_batch(self, texts):
        if self.fast is not None:
            f = getattr(self.fast, "encode_batch_fast", None) or self.fast.encode_batch
            return [e.ids for e in f(list(texts), add_special_tokens=False)]
        return [self.slow.encode(t) for t in texts]

    def decode(self, ids):
        if self.fast is not None:
            return self.fast.decode([int(i) for i in ids], skip_special_tokens=False)
        return self.slow.decode(ids)


def check_vectors(tok_path, vectors_path):
    """Compare PyBPE with the tokenizers-made vectors; returns the number of mismatches."""
    bpe = PyBPE(tok_path)
    bad = 0
    for c in _read_json(vectors_path):
        ids = bpe.encode(c["text"])
        dec = bpe.decode(c["ids"])
        if ids != c["ids"] or dec != c["decoded"]:
            bad += 1
            if bad <= 5:
                print("mismatch:", repr(c["text"][:80]), ids[:12], c["ids"][:12], file=sys.stderr)
    return bad


if __name__ == "__main__":
    n = check_vectors(sys.argv[1], sys.argv[2])
    print(f"PyBPE mismatches: {n}")
    sys.exit(1 if n else 0)
