"""Deterministic test cases (a prediction and its human answers) for the VQA accuracy, covering
every input that GT-Vision-Lab/VQA master's evaluator, upstream TinyGPT-V's copy of it and the
python3 branch treat differently (see research/README.md, "The VQA evaluators"). `make_cases()`: hand-written cases, one per mark of
punctuation, then seeded random mixtures of the same ingredients."""

from __future__ import annotations
import random
from dataclasses import dataclass

# the marks the evaluators handle (`tinygptv.scoring`) and marks they leave alone
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
         "`", ",", "?", "!"]
OTHER_MARKS = [".", "'", ":", "*", "#", "$", "%", "&", "|", "~", "^"]
BASES = ["yes", "no", "red", "dog", "two dogs", "tennis", "stop sign", "hot dog", "2", "10", "0",
         "kitchen", "t-shirt", "5:30", "1,000", "1000", "3.5", "dont", "don't", "isnt", "Im",
         "I'm", "somebody'd", "oclock", "one", "ten", "none", "eleven", "a", "the", "the dog",
         "a cat", "an apple", "Nike", "USA", "u.s.", "mr. smith", "café", "ΟΔΟΣ", "٣", "50%",
         "$5", "#1", "left one", "yes, it is", "no."]
UPSTREAM_TAILS = ["", "###", "### Human: more", "<unk>", " <unk>###Assistant: x", "\n###"]

@dataclass
class Case:
    "One question: a raw prediction, the human answers, and what it exercises."
    id: int
    pred: str
    answers: list[str]
    tag: str
    tail: str = ""      # what a model wrote after its answer (for upstream's eval_vqa.py cleaning)

def _ten(a: str) -> list[str]:
    "Ten equal human answers."
    return [a] * 10

def _mix(a: str, b: str, k: int = 7) -> list[str]:
    "`k` answers `a`, the rest of ten `b`."
    return [a] * k + [b] * (10 - k)

# ---------------------------------------------------------------------------------------------
IDENTICAL = [  # all humans agree: master compares stripped strings as they are; upstream lowercased
    ("yes", _ten("yes"), "identical: exact"), ("Yes", _ten("yes"), "identical: case"),
    ("YES", _ten("Yes"), "identical: case both"), ("yes.", _ten("yes"), "identical: period"),
    ("yes!", _ten("yes"), "identical: mark"), ("the dog", _ten("dog"), "identical: article"),
    ("dog", _ten("the dog"), "identical: gt article"), ("two", _ten("2"), "identical: number"),
    ("2", _ten("two"), "identical: gt number word"), ("dont", _ten("don't"), "identical: contr."),
    ("  yes \n", _ten("yes"), "identical: pred space"), ("yes", _ten(" yes\t"), "identical: gt ws"),
    ("yes", ["yes"] * 9 + ["yes "], "identical only after strip"),
    ("red\tcar", _ten("red car"), "identical: tab inside"),
    ("red\ncar", _ten("red\ncar"), "identical: newline both"),
    ("1,000", _ten("1000"), "identical: comma number"), ("1000", _ten("1,000"), "identical: gt ,"),
    ("", _ten(""), "identical: empty"), ("?", _ten("?"), "identical: only a mark"),
    ("hot dog", _ten("hot-dog"), "identical: hyphen"), ("café", _ten("CAFÉ"), "identical: é case"),
    ("İ", _ten("i̇"), "identical: dotted capital I"), ("ΟΔΟΣ", _ten("οδος"), "identical: sigma"),
]
MIXED = [  # humans disagree: master normalises both sides; the python3 branch only part of the gts
    ("yes", _mix("yes", "no"), "mixed: exact"), ("Yes", _mix("yes", "no"), "mixed: case"),
    ("no", _mix("yes", "no", 8), "mixed: minority"), ("yes.", _mix("yes", "no"), "mixed: period"),
    ("2", _mix("two", "2", 5), "mixed: gt number word"), ("2", _mix("Two", "3", 6), "mixed: Two"),
    ("dog", _mix("the dog", "cat"), "mixed: gt article"), ("The Dog", _mix("dog", "cat"), "mixed"),
    ("dont", _mix("don't", "no"), "mixed: contraction"), ("don't", _mix("dont", "no"), "mixed: c."),
    ("Im", _mix("I'm", "me"), "mixed: capitalised contraction key"),
    ("none", _mix("0", "1"), "mixed: none->0"), ("none", _mix("none", "1"), "mixed: none both"),
    ("1000", _mix("1,000", "100"), "mixed: comma in number"),
    ("1,000 a/b", _mix("1000 ab", "x"), "mixed: digit,digit deletes every mark"),
    ("a/b", _mix("a b", "x"), "mixed: mark -> space"), ("a / b", _mix("a  b", "a b"), "mixed: / "),
    ("a/ b/c", _mix("a bc", "a b c"), "mixed: one spaced mark deletes all of it"),
    ("3.5", _mix("3.5", "35"), "mixed: decimal"), ("3.", _mix("3", "4"), "mixed: final period"),
    ("u.s.", _mix("us", "usa"), "mixed: periods"), (".5", _mix(".5", "5"), "mixed: .5"),
    ("yes", _mix("yes", "yes "), "mixed before strip only"),
    ("yes", _mix("yes", "Yes"), "mixed: case in gts"), ("", _mix("", "a"), "mixed: empty, article"),
    ("yes", ["yes", "yes", "no"], "3 answers"), ("yes", ["yes"], "1 answer"),
    ("yes", ["yes", "no"], "2 answers"), ("no", ["no"] * 4 + ["yes"] * 8, "12 answers"),
    ("x" + "." * 40, _mix("x", "y"), "mixed: more than 32 periods"),
    ("٣.", _mix("٣", "3"), "mixed: non-ascii digit"), ("ΟΔΟΣ", _mix("οδος", "x"), "mixed: sigma"),
    ("İ", _mix("i̇", "i"), "mixed: dotted capital I"),
    ("a\u00a0b", _mix("a b", "x"), "mixed: no-break space"),
    ("a,\rb", _mix("a b", "x"), "mixed: carriage return"), ("?!", _mix("", "?"), "mixed: marks"),
]

def _marks() -> list[tuple]:
    "Each mark, glued, spaced before, spaced after, and beside a digit,digit, in mixed answers."
    out = []
    for p in PUNCT + OTHER_MARKS:
        for pred in (f"a{p}b", f"a {p}b", f"a{p} b", f"1,0 a{p}b", f"{p}", f"yes{p}"):
            gts = _mix("a b", "ab", 4)[:7] + ["a" + p + "b", "yes", "1 ab"]
            out.append((pred, gts, f"mark {p!r}"))
        out.append((f"yes{p}", _ten("yes"), f"identical, mark {p!r}"))
    return out

# ---------------------------------------------------------------------------------------------
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten"]
_SWAPS = {**{w: str(i) for i, w in enumerate(NUMBER_WORDS)}, **{str(i): w for i, w in
          enumerate(NUMBER_WORDS)}, "don't": "dont", "dont": "don't", "I'm": "Im", "Im": "I'm",
          "1,000": "1000", "1000": "1,000", "none": "0"}

def _case(rng: random.Random, s: str) -> str:
    "`s` in a random capitalisation (unchanged half the time)."
    return rng.choice([s, s, s.lower(), s.upper(), s.title(), s.capitalize()])

def _decorate(rng: random.Random, s: str) -> str:
    "One random change an annotator or a model might make to answer `s`."
    k = rng.randrange(9)
    if k == 0: return _case(rng, s)
    if k == 1: return rng.choice(["the ", "a ", "an ", "The ", "A "]) + s
    if k == 2: return " ".join(_SWAPS.get(w, w) for w in s.split(" "))
    if k == 3: return s + rng.choice(["", " "]) + rng.choice(PUNCT + OTHER_MARKS)
    if k == 4:
        p, w = rng.choice(PUNCT + OTHER_MARKS), s.split(" ")
        return rng.choice(["", " "]).join([w[0], p] + w[1:]) if len(w) > 1 else p + s
    if k == 5: return rng.choice(['"{}"', "({})", "[{}]", "{}?", "{}!", "{}..."]).format(s)
    if k == 6: return rng.choice([" ", "\n", "\t", "  "]) + s + rng.choice([" ", "\n", "\t", ""])
    if k == 7: return s.replace(" ", rng.choice(["  ", "\t", "\n", "-", "_"]))
    return s + rng.choice([".", ". ", " .", ".."])

def _variant(rng: random.Random, s: str, p: float) -> str:
    "`s`, or with probability `p` one to three random changes of it."
    for _ in range(rng.randint(1, 3) if rng.random() < p else 0): s = _decorate(rng, s)
    return s

def _random_case(rng: random.Random) -> tuple:
    "Human answers from one to three bases (sometimes all equal), a prediction near one of them."
    n = rng.choice([10] * 8 + [1, 2, 3, 5, 9, 11])
    bases = rng.sample(BASES, rng.randint(1, 3))
    if rng.random() < 0.35: gts = [_variant(rng, bases[0], 0.5)] * n
    else: gts = [_variant(rng, rng.choice(bases), 0.3) for _ in range(n)]
    src = rng.choice(gts + bases) if rng.random() < 0.85 else rng.choice(BASES)
    pred = _variant(rng, src, 0.6)
    tag = "random identical" if len(set(gts)) == 1 else "random mixed"
    return pred, gts, tag, rng.choice(UPSTREAM_TAILS)

def make_cases(n_random: int = 400, seed: int = 2312) -> list[Case]:
    "The hand-written cases, then `n_random` seeded random ones; ids are positions."
    fixed = [(p, g, t, "") for p, g, t in IDENTICAL + MIXED + _marks()]
    rng = random.Random(seed)
    rows = fixed + [_random_case(rng) for _ in range(n_random)]
    return [Case(i, p, list(g), t, tail) for i, (p, g, t, tail) in enumerate(rows)]
