"""Captioning metrics: BLEU-1..4 and CIDEr-D, numerically equal to ``pycocoevalcap`` on the same tokens.

Both follow the COCO caption evaluation code (``pycocoevalcap``), written again here so that they run
without its print statements and temporary files, return per-caption scores, and can be tested against
it (``tests/metrics``):

* **BLEU** (Papineni et al. 2002): corpus-level modified n-gram precisions with the "closest" reference
  length for the brevity penalty, and COCO's smoothing constants (``1e-15`` added to matches, ``1e-9`` to
  the counts), so a caption with no 4-gram match scores about ``1e-5``-ish, not exactly 0.
* **CIDEr-D** (Vedantam et al. 2015), the variant COCO reports as "CIDEr": TF-IDF n-gram vectors
  (n = 1..4, IDF from the *references of the evaluated set*), clipped candidate counts, a Gaussian length
  penalty (sigma 6), averaged over references and multiplied by 10. As in ``pycocoevalcap``, the "length"
  in the penalty is the number of bigrams of a caption (one less than its word count).

Tokenisation (``tokenizer=``):

* ``"ptb"`` -- the Stanford PTB tokenizer that ships inside ``pycocoevalcap`` (needs ``java``), run with
  ``-preserveLines -lowerCase`` and the same punctuation removed afterwards: COCO's exact tokens.
  (Brackets come out as ``-lrb-``/``-rrb-`` and are kept, as in COCO.)
* ``"python"`` -- a pure-Python approximation of the above (see :func:`python_tokenize`).
* ``"whitespace"`` -- the captions are already tokenised: split on whitespace only.
* ``"auto"`` (default) -- ``ptb`` when ``java`` and the jar are found, else ``python``.

Every result says which tokenizer was used (``"tokenizer"`` key).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "PUNCTUATION_TOKENS",
    "TOKENIZERS",
    "bleu_from_tokens",
    "bleu_scores",
    "cider_d_from_tokens",
    "cider_scores",
    "ptb_available",
    "ptb_tokenize",
    "python_tokenize",
    "tokenize_captions",
]

TOKENIZERS: tuple[str, ...] = ("auto", "ptb", "python", "whitespace")
#: Tokens removed after tokenisation (COCO's list; note ``-lrb-`` etc. survive lower-casing).
PUNCTUATION_TOKENS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_BLEU_TINY = 1e-15
_BLEU_SMALL = 1e-9


# --------------------------------------------------------------------------------------------- tokenizers
@lru_cache(maxsize=1)
def _ptb_jar() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None:
        return None
    # pycocoevalcap has no __init__.py (a namespace package): look in each of its locations
    for location in spec.submodule_search_locations or []:
        jar = Path(location) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
        if jar.is_file():
            return jar
    return None


def ptb_available() -> bool:
    """``True`` when ``java`` is on ``PATH`` and ``pycocoevalcap``'s Stanford jar is installed."""
    return shutil.which("java") is not None and _ptb_jar() is not None


def ptb_tokenize(captions: Sequence[str], timeout: float = 300.0) -> list[list[str]]:
    """Tokenise with the Stanford PTB tokenizer exactly as ``pycocoevalcap.tokenizer.PTBTokenizer`` does.

    Parameters
    ----------
    captions : sequence of str
        One caption per entry (newlines inside a caption become spaces).
    timeout : float
        Seconds before the Java process is killed.

    Returns
    -------
    list of list of str
        Lower-cased tokens of each caption, COCO punctuation removed.
    """
    jar = _ptb_jar()
    java = shutil.which("java")
    if jar is None or java is None:
        raise RuntimeError(
            "the PTB tokenizer needs java on PATH and pycocoevalcap installed "
            f"(java: {java or 'missing'}, jar: {jar or 'missing'}); install a JRE or use tokenizer='python'"
        )
    if not captions:
        return []
    lines = [str(c).replace("\r", " ").replace("\n", " ") for c in captions]
    with tempfile.TemporaryDirectory(prefix="medfm_ptb_") as tmp:
        path = os.path.join(tmp, "captions.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
        proc = subprocess.run(
            [java, "-cp", str(jar), _PTB_CLASS, "-preserveLines", "-lowerCase", path],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the PTB tokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    out_lines = proc.stdout.decode("utf-8").split("\n")
    if len(out_lines) > len(lines) and all(not x.strip() for x in out_lines[len(lines) :]):
        out_lines = out_lines[: len(lines)]
    if len(out_lines) != len(lines):
        raise RuntimeError(f"the PTB tokenizer returned {len(out_lines)} lines for {len(lines)} captions")
    return [[w for w in line.rstrip().split(" ") if w and w not in PUNCTUATION_TOKENS] for line in out_lines]


_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CONTRACTION_RE = re.compile(r"(?i)\b(ca|wo|[^\W\d_]+)(n't)\b|([^\W\d_])('s|'re|'ve|'ll|'d|'m)\b")
_TOKEN_RE = re.compile(
    r"""
    [^\W\d_](?:\.[^\W\d_])+\.?            # abbreviations with inner periods: e.g. u.s. p.m.
  | \d+(?:[.,:/]\d+)*(?:-\w+)*       # numbers: 2.5 1,000 3:45 1/2 7-mm
  | n't | '(?:s|re|ve|ll|d|m)\b     # split-off contractions
  | \w+(?:[-/'&]\w+)*   # words, hyphenated or slashed words
  | \.\.\. | -- | ``  | ''
  | \S                              # any other single character
    """,
    re.VERBOSE,
)


def python_tokenize(caption: str) -> list[str]:
    """A pure-Python approximation of COCO's PTB tokenisation (lower case, punctuation removed).

    It splits punctuation off words, splits contractions (``isn't`` -> ``is n't``), keeps numbers,
    hyphenated/slashed words and dotted abbreviations (``e.g.``) whole, writes brackets as PTB does
    (``-lrb-`` ...), and drops the same punctuation tokens. Known differences from the Java tokenizer:
    undotted abbreviations (``dr.``, ``fig.``) lose their period, and rare Unicode or URL handling differs.

    Examples
    --------
    >>> python_tokenize("A chest X-ray (PA view) isn't normal.")
    ['a', 'chest', 'x-ray', '-lrb-', 'pa', 'view', '-rrb-', 'is', "n't", 'normal']
    """
    text = str(caption).replace("\n", " ").lower()
    text = text.replace("\u2019", "'")
    text = _CONTRACTION_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}" if m.group(2) else f"{m.group(3)} {m.group(4)}", text)
    text = re.sub(r'"', " '' ", text)
    tokens = []
    for tok in _TOKEN_RE.findall(text):
        tok = _BRACKETS.get(tok, tok)
        if tok not in PUNCTUATION_TOKENS:
            tokens.append(tok)
    return tokens


def tokenize_captions(captions: Sequence[str], tokenizer: str = "auto") -> tuple[list[list[str]], str]:
    """Tokenise captions and say which tokenizer did it.

    Parameters
    ----------
    captions : sequence of str
    tokenizer : {"auto", "ptb", "python", "whitespace"}

    Returns
    -------
    (tokens, used)
        ``used`` is ``"ptb"``, ``"python"`` or ``"whitespace"``.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; use one of {', '.join(TOKENIZERS)}")
    if tokenizer == "auto":
        tokenizer = "ptb" if ptb_available() else "python"
        if tokenizer == "python":
            logger.warning("java or the PTB jar is missing: using the pure-Python tokenizer (scores may differ slightly)")
    if tokenizer == "ptb":
        return ptb_tokenize(captions), "ptb"
    if tokenizer == "python":
        return [python_tokenize(c) for c in captions], "python"
    return [str(c).split() for c in captions], "whitespace"


# ------------------------------------------------------------------------------------------------- BLEU
def _ngrams(tokens: Sequence[str], max_n: int) -> Counter:
    counts: Counter = Counter()
    for k in range(1, max_n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


def _check_refs(hypotheses: Sequence[Any], references: Sequence[Any]) -> None:
    if len(hypotheses) == 0:
        raise ValueError("no predictions: BLEU and CIDEr-D need at least one caption and its references")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} predictions and {len(references)} reference lists; pass one list per prediction"
        )
    for i, refs in enumerate(references):
        if len(refs) == 0:
            raise ValueError(f"sample {i} has no reference caption; every prediction needs at least one")


def bleu_from_tokens(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]], max_n: int = 4
) -> dict[str, Any]:
    """Corpus BLEU-1..``max_n`` and per-caption BLEU on tokenised captions (COCO's definition).

    Parameters
    ----------
    hypotheses : sequence of token lists
        One candidate per sample.
    references : sequence of (sequence of token lists)
        One or more references per sample.
    max_n : int
        Highest n-gram order.

    Returns
    -------
    dict
        ``bleu_1`` ... ``bleu_{max_n}`` (corpus), ``per_sample_bleu_{k}`` lists, ``brevity_ratio``
        (candidate length / effective reference length), ``hypothesis_length``, ``reference_length``.
    """
    _check_refs(hypotheses, references)
    total_guess = [0] * max_n
    total_correct = [0] * max_n
    total_test = 0
    total_ref = 0
    per_sample: list[list[float]] = [[] for _ in range(max_n)]
    for hyp, refs in zip(hypotheses, references):
        max_ref: dict[tuple[str, ...], int] = {}
        for ref in refs:
            for gram, c in _ngrams(ref, max_n).items():
                if c > max_ref.get(gram, 0):
                    max_ref[gram] = c
        test_len = len(hyp)
        # closest reference length, the shorter one on ties
        ref_len = min((abs(len(r) - test_len), len(r)) for r in refs)[1]
        guess = [max(0, test_len - k) for k in range(max_n)]
        correct = [0] * max_n
        for gram, c in _ngrams(hyp, max_n).items():
            correct[len(gram) - 1] += min(max_ref.get(gram, 0), c)
        total_test += test_len
        total_ref += ref_len
        prod = 1.0
        ratio = (test_len + _BLEU_TINY) / (ref_len + _BLEU_SMALL)
        for k in range(max_n):
            total_guess[k] += guess[k]
            total_correct[k] += correct[k]
            prod *= (float(correct[k]) + _BLEU_TINY) / (float(guess[k]) + _BLEU_SMALL)
            score = prod ** (1.0 / (k + 1))
            if ratio < 1:
                score *= math.exp(1 - 1 / ratio)
            per_sample[k].append(score)
    out: dict[str, Any] = {}
    ratio = (total_test + _BLEU_TINY) / (total_ref + _BLEU_SMALL)
    prod = 1.0
    for k in range(max_n):
        prod *= float(total_correct[k] + _BLEU_TINY) / (total_guess[k] + _BLEU_SMALL)
        score = prod ** (1.0 / (k + 1))
        if ratio < 1:
            score *= math.exp(1 - 1 / ratio)
        out[f"bleu_{k + 1}"] = score
    for k in range(max_n):
        out[f"per_sample_bleu_{k + 1}"] = per_sample[k]
    out.update({"brevity_ratio": ratio, "hypothesis_length": total_test, "reference_length": total_ref})
    return out


# ---------------------------------------------------------------------------------------------- CIDEr-D
def cider_d_from_tokens(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    n: int = 4,
    sigma: float = 6.0,
    idf_references: Sequence[Sequence[Sequence[str]]] | None = None,
) -> dict[str, Any]:
    """CIDEr-D of tokenised captions (COCO's ``Cider`` scorer).

    Parameters
    ----------
    hypotheses : sequence of token lists
    references : sequence of (sequence of token lists)
    n : int
        Highest n-gram order.
    sigma : float
        Width of the Gaussian length penalty.
    idf_references : sequence of (sequence of token lists), optional
        The reference sets (one per image) the document frequencies come from; default ``references``
        (COCO). Pass a fixed set -- e.g. the clean references of the same images -- so that scores of
        different subsets or conditions share one IDF and stay comparable.

    Returns
    -------
    dict
        ``cider`` (mean over samples) and ``per_sample_cider``.
    """
    _check_refs(hypotheses, references)
    if not hypotheses:
        return {"cider": float("nan"), "per_sample_cider": []}
    ref_counts = [[_ngrams(r, n) for r in refs] for refs in references]
    idf_counts = ref_counts if idf_references is None else [[_ngrams(r, n) for r in refs] for refs in idf_references]
    if not idf_counts:
        raise ValueError("idf_references is empty: pass at least one reference set")
    doc_freq: Counter = Counter()
    for counts in idf_counts:
        doc_freq.update(set().union(*(c.keys() for c in counts)))
    log_num_docs = math.log(float(len(idf_counts)))

    def tfidf(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(n)]
        sq = [0.0] * n
        n_bigrams = 0
        for gram, tf in counts.items():
            order = len(gram) - 1
            weight = float(tf) * (log_num_docs - math.log(max(1.0, float(doc_freq.get(gram, 0)))))
            vec[order][gram] = weight
            sq[order] += weight**2
            if order == 1:
                n_bigrams += tf
        return vec, [math.sqrt(s) for s in sq], n_bigrams

    scores: list[float] = []
    for hyp, counts in zip(hypotheses, ref_counts):
        vh, nh, lh = tfidf(_ngrams(hyp, n))
        total = [0.0] * n
        for rc in counts:
            vr, nr, lr = tfidf(rc)
            penalty = math.exp(-(float(lh - lr) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] != 0 and nr[k] != 0:
                    dot /= nh[k] * nr[k]
                total[k] += dot * penalty
        scores.append(sum(total) / n / len(counts) * 10.0)
    return {"cider": sum(scores) / len(scores), "per_sample_cider": scores}


# ------------------------------------------------------------------------------------------- front-ends
def _tokenize_pairs(
    predictions: Sequence[str], references: Sequence[Any], tokenizer: str
) -> tuple[list[list[str]], list[list[list[str]]], str]:
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    _check_refs(predictions, refs)
    flat = [str(p) for p in predictions] + [r for rs in refs for r in rs]
    tokens, used = tokenize_captions(flat, tokenizer)
    hyp = tokens[: len(predictions)]
    pos = len(predictions)
    ref_tokens = []
    for rs in refs:
        ref_tokens.append(tokens[pos : pos + len(rs)])
        pos += len(rs)
    return hyp, ref_tokens, used


def bleu_scores(
    predictions: Sequence[str], references: Sequence[Any], *, tokenizer: str = "auto", max_n: int = 4
) -> dict[str, Any]:
    """BLEU-1..4 of captions (``bleu`` = BLEU-4, the headline); see :func:`bleu_from_tokens`.

    Parameters
    ----------
    predictions : sequence of str
    references : sequence of (str or sequence of str)
        One or more reference captions per prediction.
    tokenizer : str
        See the module docstring.
    max_n : int

    Examples
    --------
    >>> out = bleu_scores(["a small nodule in the left lung"], [["small nodule in the left lung"]],
    ...                   tokenizer="python")
    >>> round(out["bleu_1"], 4), out["tokenizer"]
    (0.8571, 'python')
    """
    hyp, refs, used = _tokenize_pairs(predictions, references, tokenizer)
    out = bleu_from_tokens(hyp, refs, max_n=max_n)
    out = {"bleu": out[f"bleu_{max_n}"], **out, "tokenizer": used}
    return out


def cider_scores(
    predictions: Sequence[str], references: Sequence[Any], *, tokenizer: str = "auto", n: int = 4, sigma: float = 6.0
) -> dict[str, Any]:
    """CIDEr-D of captions; see :func:`cider_d_from_tokens` (IDF comes from these references)."""
    hyp, refs, used = _tokenize_pairs(predictions, references, tokenizer)
    out = cider_d_from_tokens(hyp, refs, n=n, sigma=sigma)
    out["tokenizer"] = used
    return out
