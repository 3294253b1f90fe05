"""Training data from shared/corpus/make_corpus.py output.

The corpus is documents separated by blank lines. One-line documents `word: definition; "example"` are
WordNet glosses: they become chat turns in DeepSeek-V3's template,
    <｜begin▁of▁sentence｜><｜User｜>What does "word" mean?<｜Assistant｜>Definition.<｜end▁of▁sentence｜>
Everything else (fortunes, FOLDOC and Jargon paragraphs, runs of them kept in corpus order) is plain
continuation text. Glosses are held out by headword (crc32, so the split is the same on every machine).
"""
import gzip
import re
import zlib

import numpy as np

BOS, EOS, USER, ASSISTANT = 0, 1, 3, 4
SPECIALS = {"<｜begin▁of▁sentence｜>": BOS, "<｜end▁of▁sentence｜>": EOS, "<｜User｜>": USER, "<｜Assistant｜>": ASSISTANT}

MAIN_QUESTION = 'What does "{w}" mean?'
QUESTIONS = [(MAIN_QUESTION, 0.6), ('What is the meaning of "{w}"?', 0.1), ('Define "{w}".', 0.1),
             ('What does the word "{w}" mean?', 0.1), ('What is "{w}"?', 0.1)]
# words the lead demonstrates with: always trained on, never held out
DEMO_WORDS = {"harbor", "house", "dog", "computer", "music", "river", "bread", "happy"}

_GLOSS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9 .'/-]{0,59}): (\S.*\S)$")


def read_corpus(path, max_chars=None):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read(max_chars) if max_chars else f.read()


def parse_gloss(para):
    """(headword, definition) or None."""
    if "\n" in para:
        return None
    m = _GLOSS.match(para)
    if not m:
        return None
    word, rest = m.group(1), m.group(2)
    if len(word.split()) > 6 or (word.isupper() and len(word) > 3) or not rest.isascii():
        return None
    definition = rest.split('; "')[0].strip().rstrip(";")
    if len(definition) < 2:
        return None
    return word, definition


def answer_text(definition):
    a = definition[0].upper() + definition[1:]
    return a if a[-1] in ".!?" else a + "."


def held_out_word(word, per_mille):
    return word.lower() not in DEMO_WORDS and zlib.crc32(word.lower().encode()) % 1000 < per_mille


def split_corpus(text, heldout_per_mille=25, plain_group=16):
    """-> glosses [(word, definition)], plain chunks [(text, is_run_start, is_run_end)]."""
    glosses, plain, run = [], [], []

    def close_run():
        for i in range(0, len(run), plain_group):
            plain.append(("\n\n".join(run[i:i + plain_group]), i == 0, i + plain_group >= len(run)))
        run.clear()

    for para in text.split("\n\n"):
        g = parse_gloss(para)
        if g:
            close_run()
            glosses.append(g)
        elif para.strip():
            run.append(para)
    close_run()
    return glosses, plain


class Units:
    """Token units (numpy int32 arrays) for training and held-out evaluation."""

    def __init__(self, tok, text, seed, seq_len, heldout_per_mille=25, chat_repeat=2):
        glosses, plain = split_corpus(text)
        rng = np.random.RandomState(seed % 2**32)
        probs = np.array([p for _, p in QUESTIONS])
        choice = rng.choice(len(QUESTIONS), size=len(glosses), p=probs / probs.sum())
        held = [held_out_word(w, heldout_per_mille) for w, _ in glosses]
        questions = [(MAIN_QUESTION if h else QUESTIONS[q][0]).format(w=w)
                     for (w, _), q, h in zip(glosses, choice, held)]
        answers = [answer_text(d) for _, d in glosses]
        enc = tok.encode_batch(questions + answers + [p[0] for p in plain])
        nq = len(glosses)
        self.chat_held, self.held_meta, turns = [], [], []
        for i, (w, d) in enumerate(glosses):
            q, a = enc[i], enc[nq + i]
            if held[i]:
                self.chat_held.append(np.array([BOS, USER] + q + [ASSISTANT] + a + [EOS], dtype=np.int32))
                self.held_meta.append({"word": w, "definition": d, "prompt_len": len(q) + 3})
            else:
                turns.append([USER] + q + [ASSISTANT] + a + [EOS])
        # every turn once alone; each further copy groups turns into conversations of 1-4 turns in
        # DeepSeek's multi-turn template (one BOS, then User/Assistant/EOS per turn), for `tandem chat`
        self.chat_train = [np.array([BOS] + t, dtype=np.int32) for t in turns]
        for c in range(1, chat_repeat):
            order = rng.permutation(len(turns))
            sizes = rng.choice([1, 2, 3, 4], size=len(turns), p=[0.4, 0.3, 0.2, 0.1])
            i = j = 0
            while i < len(turns):
                conv = [BOS]
                for t in order[i:i + sizes[j]]:
                    conv += turns[t]
                self.chat_train.append(np.array(conv, dtype=np.int32))
                i += sizes[j]
                j += 1
        self.train_words = {w.lower() for (w, _), h in zip(glosses, held) if not h}
        self.plain_train, self.plain_held = [], []
        for j, (t, start, end) in enumerate(plain):
            ids = enc[2 * nq + j]
            # long runs are cut into pieces of at most seq_len tokens so that shuffling mixes them
            pieces = [ids[k:k + seq_len] for k in range(0, max(len(ids), 1), seq_len)]
            for n, p in enumerate(pieces):
                arr = np.array(([BOS] if start and n == 0 else []) + p +
                               ([EOS] if end and n == len(pieces) - 1 else []), dtype=np.int32)
                if len(arr) < 2:
                    continue
                if zlib.crc32(t.encode()) % 100 == 0:
                    self.plain_held.append(arr)
                else:
                    self.plain_train.append(arr)
        tok_count = lambda xs: int(sum(len(x) for x in xs))
        self.stats = {"glosses": len(glosses), "chat_train_turns": len(turns), "chat_train_units": len(self.chat_train),
                      "chat_held": len(self.chat_held),
                      "plain_train_units": len(self.plain_train), "plain_held_units": len(self.plain_held),
                      "chat_train_tokens": tok_count(self.chat_train), "chat_held_tokens": tok_count(self.chat_held),
                      "plain_train_tokens": tok_count(self.plain_train),
                      "plain_held_tokens": tok_count(self.plain_held)}
        if not turns or not self.chat_held or not self.plain_train:
            raise RuntimeError(f"corpus split left an empty set: {self.stats} (is this make_corpus.py output?)")

    def epoch_rows(self, epoch, seed, seq_len):
        """All training units of one epoch, shuffled (seeded by epoch), concatenated and cut into rows of
        seq_len+1 tokens. Returns int32 [n_rows, seq_len+1]."""
        units = self.chat_train + self.plain_train
        order = np.random.RandomState((seed * 1000003 + epoch) % 2**32).permutation(len(units))
        stream = np.concatenate([units[i] for i in order])
        n = len(stream) // (seq_len + 1)
        return stream[:n * (seq_len + 1)].reshape(n, seq_len + 1)

    def epoch_tokens(self):
        return self.stats["chat_train_tokens"] + self.stats["plain_train_tokens"]


def pack_rows(units, seq_len, max_rows):
    stream = np.concatenate(units)
    n = min(len(stream) // (seq_len + 1), max_rows)
    return stream[:n * (seq_len + 1)].reshape(n, seq_len + 1)


def pad_batch(units, pad=EOS):
    """Right-padded [B, Tmax] int64 + lengths."""
    n = max(len(u) for u in units)
    out = np.full((len(units), n), pad, dtype=np.int64)
    for i, u in enumerate(units):
        out[i, :len(u)] = u
    return out, np.array([len(u) for u in units])
