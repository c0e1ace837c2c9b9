"""VQA accuracy: read the chosen option out of a free-text answer, or match an open answer exactly.

Multiple choice (the sample has ``options``): the answer is read as an option letter or an option text,
tried in this order (the first rule that fires decides):

1. the whole answer is a letter: ``"B"``, ``"(b)"``, ``"C."``;
2. an answer phrase names a letter: ``"The answer is (B) ..."``, ``"Answer: c"``, ``"option D"``;
   a bare ``a``/``I`` followed by a word is read as English, not as a letter, and an echoed
   ``Options: A) ... B) ...`` list is not an answer;
3. the answer starts with a labelled letter: ``"B. Pneumothorax"``, ``"(C) ..."``, ``"d) ..."``;
4. the answer contains the text of exactly one option (whole words, case and punctuation ignored; when
   one matching option is contained in another matching option, the longer wins): ``"Pneumothorax."``;
5. exactly one upper-case option letter stands alone before punctuation or the end: ``"I'd pick C."``
   (``"A or B."`` names two letters: ambiguous).

Two guards come before rules 2-5: a **hedge** -- more than one option letter standing alone
(``"A B C D"``, ``"A/B/C/D"``, ``"(A)(B)"``, ``"either A or B"``, ``"A and C are both possible"``) -- is ambiguous, and a **negation** of an
option (``"It is not D."``, ``"not pneumonia"``, ``"neither A nor B"``) is unparsable (``negated``), even when
another option is named as well (``"B, not A"``): credit needs one plain choice.

Anything else -- no letter, several options named, a letter outside the options, an empty answer -- is
*unparsable* and counts as wrong (it stays in the denominator and is reported separately).

Open-ended (no options): both strings are normalised (lower case, punctuation and the articles a/an/the
removed, number words zero-ten turned into digits, whitespace collapsed) and must be equal; when the
reference is ``yes``/``no`` the first word of the answer is used (``"Yes, there is ..."``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

__all__ = ["normalize_answer", "parse_choice", "vqa_scores"]

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT_RE = re.compile(rf"[{re.escape(string.punctuation)}]")
_MARKUP_RE = re.compile(r"(\*\*|__|`)")
_WHOLE_LETTER_RE = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[\.:]?\s*$")
_PHRASE_RE = re.compile(
    r"\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|will\s+be))?\s*(?:[:\-=]\s*)?(?:option\s+|choice\s+)?"
    r"([\(\[])?([A-Za-z])(?![A-Za-z])([\)\]\.:,;])?",
    flags=re.IGNORECASE,
)
_LEADING_RE = re.compile(r"^\s*[\(\[]?([A-Za-z])\s*[\)\]\.:]")
_LOOSE_LETTER_RE = re.compile(r"(?<![A-Za-z'])([A-Z])(?=\s*[\.\)\]:,;!]|\s*$)")
_ALTERNATIVE_RE = re.compile(r"(?<![A-Za-z'])([A-Z])(?=\s+(?:or|and)\b)")  # "A or B": both named
_ALTERNATIVE_AFTER_RE = re.compile(r"\b(?:or|and)\s+([A-Z])(?![A-Za-z'])")  # "A and C are both ...": C too
_OPTION_LABEL_RE = re.compile(r"^\s*[\(\[]?[A-Za-z][\)\]\.:]\s+")
# An upper-case letter standing alone and not starting an English phrase ("A pneumothorax", "I think").
_STANDALONE_RE = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])(?!\s+[a-z])")
_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|neither|nor|except|excluding|without|ruled?\s+out|rules\s+out|isn't|aren't|wasn't|"
    r"can't|cannot|don't|doesn't)\b[\s:,\-]*(?:(?:option|choice|answer|the|a|an|is|be)\s+)*",
    flags=re.IGNORECASE,
)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and articles removed, number words as digits, single spaces.

    Examples
    --------
    >>> normalize_answer("The Left  Lung, two nodules.")
    'left lung 2 nodules'
    """
    text = _MARKUP_RE.sub(" ", str(text)).lower()
    text = _PUNCT_RE.sub(" ", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def _option_text(option: str) -> str:
    """An option's text without a leading ``"A. "`` label, normalised."""
    return normalize_answer(_OPTION_LABEL_RE.sub("", str(option)))


_ECHO_RE = re.compile(r"\boptions?\s*:", flags=re.IGNORECASE)  # an echoed "Options: A) ... B) ..." list


def _negates_an_option(raw: str, options: Sequence[str], letters: list[str]) -> bool:
    """Whether a negation word is directly followed by an option letter or an option's text."""
    texts = [t for o in options if (t := _option_text(o))]
    for m in _NEGATION_RE.finditer(raw):
        whole = f"{normalize_answer(raw[m.start() :])} "
        if any(whole.startswith(f"{t} ") for t in texts):
            continue  # the negation belongs to an option's own text ("No pneumonia")
        rest = raw[m.end() :]
        lm = re.match(r"[\(\[]?([A-Za-z])(?![A-Za-z'])", rest)
        if lm and lm.group(1).upper() in letters and (lm.group(1).isupper() or lm.group(0).startswith(("(", "["))):
            return True
        norm = f"{normalize_answer(rest)} "
        if any(norm.startswith(f"{t} ") for t in texts):
            return True
    return False


def _letters(n: int) -> list[str]:
    if n > 26:
        raise ValueError(f"{n} options: at most 26 (A-Z) are supported")
    return [chr(ord("A") + i) for i in range(n)]


def parse_choice(text: Any, options: Sequence[str]) -> tuple[str | None, str]:
    """Which option letter a free-text answer chooses.

    Parameters
    ----------
    text : str
        The model's answer.
    options : sequence of str
        The options shown, in order (option ``i`` has letter ``"ABC..."[i]``).

    Returns
    -------
    (letter or None, rule)
        ``rule`` names the rule that fired (``letter``, ``phrase``, ``leading``, ``text``, ``loose``), or why
        nothing did (``empty``, ``out_of_range``, ``ambiguous``, ``no_match``).

    Examples
    --------
    >>> parse_choice("The answer is (B) pneumothorax.", ["Pneumonia", "Pneumothorax"])
    ('B', 'phrase')
    >>> parse_choice("pneumothorax", ["Pneumonia", "Pneumothorax"])
    ('B', 'text')
    """
    if options is None or isinstance(options, str):
        raise ValueError(f"options must be a list of option texts, got {options!r}; use vqa_scores with an empty "
                         "option list for open questions")
    letters = _letters(len(options))
    if text is None or not str(text).strip():
        return None, "empty"
    raw = _MARKUP_RE.sub("", str(text)).strip()

    def _check(letter: str, rule: str) -> tuple[str | None, str]:
        up = letter.upper()
        return (up, rule) if up in letters else (None, "out_of_range")

    m = _WHOLE_LETTER_RE.match(raw)
    if m:
        return _check(m.group(1), "letter")
    if _negates_an_option(raw, options, letters):
        return None, "negated"
    named = {c for c in _STANDALONE_RE.findall(raw) + _ALTERNATIVE_RE.findall(raw) + _ALTERNATIVE_AFTER_RE.findall(raw)
             if c in letters}
    if len(named) > 1 and not _ECHO_RE.search(raw):
        return None, "ambiguous"
    out_of_range = False
    for m in _PHRASE_RE.finditer(raw):
        opened, letter, closer = m.group(1), m.group(2), m.group(3)
        rest = raw[m.end() :]
        bare = not opened and not closer
        if bare and (rest.startswith("'") or (letter in "aAiI" and re.match(r"\s+[A-Za-z]", rest))):
            continue  # English "a"/"I" ("the answer is a pneumothorax", "answer: I don't know")
        if letter.upper() in letters:
            return letter.upper(), "phrase"
        out_of_range = True
    m = _LEADING_RE.match(raw)
    if m:
        return _check(m.group(1), "leading")
    norm = f" {normalize_answer(raw)} "
    matched = [i for i, opt in enumerate(options) if (t := _option_text(opt)) and f" {t} " in norm]
    if matched:
        texts = {i: _option_text(options[i]) for i in matched}
        keep = [i for i in matched if not any(j != i and texts[i] in texts[j] for j in matched)]
        if len(keep) == 1:
            return letters[keep[0]], "text"
        return None, "ambiguous"
    loose = {c for c in _LOOSE_LETTER_RE.findall(raw) + _ALTERNATIVE_RE.findall(raw) if c in letters}
    if len(loose) == 1:
        return loose.pop(), "loose"
    if len(loose) > 1:
        return None, "ambiguous"
    return None, "out_of_range" if out_of_range else "no_match"


def _reference_letter(reference: str, options: Sequence[str], index: int) -> str:
    letters = _letters(len(options))
    ref = str(reference).strip()
    if ref.upper() in letters and len(ref) == 1:
        return ref.upper()
    norm = normalize_answer(ref)
    for letter, opt in zip(letters, options):
        if _option_text(opt) == norm:
            return letter
    raise ValueError(
        f"reference {index} ({reference!r}) is neither an option letter ({', '.join(letters)}) nor one of the "
        f"option texts {list(options)}; fix the dataset row"
    )


def _open_match(prediction: Any, reference: str) -> tuple[str | None, bool]:
    if prediction is None or not str(prediction).strip():
        return None, False
    pred = normalize_answer(prediction)
    ref = normalize_answer(reference)
    if ref in ("yes", "no") and pred.split()[:1] and pred.split()[0] in ("yes", "no"):
        pred = pred.split()[0]
    return pred, pred == ref


def vqa_scores(
    predictions: Sequence[Any],
    references: Sequence[str],
    options: Sequence[Sequence[str] | None] | None = None,
) -> dict[str, Any]:
    """Accuracy of free-text answers (multiple choice where ``options`` is given, else open-ended).

    Parameters
    ----------
    predictions : sequence of str
        Model answers; ``None`` or ``""`` for a failed generation (counted wrong).
    references : sequence of str
        Option letter or option text (multiple choice), or the answer (open-ended).
    options : sequence of (sequence of str or None), optional
        Per-sample options; an empty list or ``None`` makes that sample open-ended.

    Returns
    -------
    dict
        ``accuracy``, ``num_samples``, ``num_correct``, ``num_unparsable``, ``accuracy_multiple_choice`` and
        ``num_multiple_choice``, ``accuracy_open`` and ``num_open`` (NaN when there are none),
        ``per_sample_correct``, ``parsed`` (the letter or normalised answer read, ``None`` if unparsable).

    Examples
    --------
    >>> vqa_scores(["B.", "Yes, it is.", "unsure"], ["B", "yes", "A"], [["x", "y"], [], ["x", "y"]])["accuracy"]
    0.6666666666666666
    """
    n = len(predictions)
    if options is None:
        options = [None] * n
    if len(references) != n or len(options) != n:
        raise ValueError(
            f"got {n} predictions, {len(references)} references and {len(options)} option lists; "
            "pass one of each per sample (an empty option list for open questions)"
        )
    correct: list[bool] = []
    parsed: list[str | None] = []
    is_mc: list[bool] = []
    for i, (pred, ref, opts) in enumerate(zip(predictions, references, options)):
        if opts:
            ref_letter = _reference_letter(ref, opts, i)
            letter, _ = parse_choice(pred, opts)
            parsed.append(letter)
            correct.append(letter == ref_letter)
            is_mc.append(True)
        else:
            got, ok = _open_match(pred, ref)
            parsed.append(got)
            correct.append(ok)
            is_mc.append(False)

    def _acc(mask: list[bool]) -> float:
        sel = [c for c, m in zip(correct, mask) if m]
        return sum(sel) / len(sel) if sel else float("nan")

    return {
        "accuracy": sum(correct) / n if n else float("nan"),
        "num_samples": n,
        "num_correct": int(sum(correct)),
        "num_unparsable": sum(1 for p in parsed if p is None),
        "accuracy_multiple_choice": _acc(is_mc),
        "num_multiple_choice": int(sum(is_mc)),
        "accuracy_open": _acc([not m for m in is_mc]),
        "num_open": n - int(sum(is_mc)),
        "per_sample_correct": correct,
        "parsed": parsed,
    }
