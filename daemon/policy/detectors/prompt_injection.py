"""``prompt_injection``: phrases that try to take over the model.

Categories:
- ``override``: "ignore / disregard / forget / override / bypass (all) (the) previous / prior /
  above / earlier instructions / rules / prompts", "ignore all your rules", "forget everything
  you were told", "ignore everything above";
- ``role_hijack``: "you are now an unrestricted / unfiltered / jailbroken ...", "act as / pretend
  to be an unrestricted ...", "from now on you will act as / ignore / have no rules ...",
  "you are no longer bound by ...", "you have no restrictions";
- ``extraction``: "reveal / print / show / repeat / tell me your system prompt / initial
  instructions", "what is your system prompt", "repeat the words above";
- ``jailbreak``: DAN ("you are DAN", "DAN mode", "Do Anything Now") and "developer mode" when
  addressed to the model ("you are in developer mode", "ChatGPT with developer mode",
  "developer mode output").

Matching is robust to case, extra whitespace, punctuation between words, zero-width and
other invisible characters inside words, combining accents, and Latin look-alike letters
(Cyrillic, Greek, full-width, mathematical alphanumerics): the text is folded first (see
``_fold``), and offsets are mapped back to the original text. A phrase directly negated
("do not ignore the previous instructions") is not reported. Benign mentions ("follow the
previous instructions in the manual", "how do I write a good system prompt?", "the DAN
river", "enable developer mode on Android") are not reported: the detector leans towards
precision, since by default it blocks.

Options:
- ``allow``: literal phrases never reported.
- ``categories``: subset of ``["override", "role_hijack", "extraction", "jailbreak"]`` (default all).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import re2

from ._base import Detector, Hit
from ._fold import Folded

CATEGORIES = ("override", "role_hijack", "extraction", "jailbreak")

_S = r"[^a-z]+"


def _words(*alternatives: str) -> str:
    """A non-capturing alternation where spaces inside alternatives match any separator run."""
    return "(?:" + "|".join(a.replace(" ", _S) for a in alternatives) + ")"


def _seq(*parts: str) -> str:
    return _S.join(parts)


_VERB = _words(
    "ignore", "disregard", "forget", "override", "bypass", "abandon", "discard", "neglect", "dismiss"
)
_QUAL = _words(
    "previous",
    "prior",
    "preceding",
    "above",
    "earlier",
    "former",
    "foregoing",
    "original",
    "initial",
    "old",
    "existing",
    "system",
    "developer",
    "default",
    "safety",
    "ethical",
    "content",
    "given",
    "original system",
)
_NOUN = _words(
    "instructions?",
    "rules?",
    "prompts?",
    "directions?",
    "directives?",
    "guidelines?",
    "commands?",
    "orders?",
    "context",
    "messages?",
    "guidance",
    "constraints?",
    "restrictions?",
    "programming",
    "polic(?:y|ies)",
    "safeguards?",
    "filters?",
    "training",
    "system prompt",
)
_DET = _words(
    "all", "any", "every", "each", "of", "the", "your", "these", "those", "my", "such", "and", "its"
)
_BAD = _words(
    "unrestricted",
    "unfiltered",
    "uncensored",
    "unbound",
    "unlimited",
    "jailbroken",
    "evil",
    "rogue",
    "malicious",
    "amoral",
    "unethical",
    "dan",
    "free from",
    "no longer bound",
    "not bound",
    "without any restrictions",
    "without restrictions",
    "without any rules",
    "without rules",
    "without filters",
    "without any filters",
    "without limits",
    "without any limits",
    "in developer mode",
    "in god mode",
)
_ARTICLE = r"(?:(?:a|an|the|completely|totally|fully|now|in|my)" + _S + r"){0,3}"

_OVERRIDE = "|".join(
    (
        _seq(
            _VERB, "(?:" + _DET + _S + "){0,4}" + _QUAL, "(?:(?:and|or)" + _S + "[a-z]+" + _S + ")?" + _NOUN
        ),
        _seq(
            _VERB,
            "(?:(?:all|of|the)" + _S + "){0,2}" + _words("all", "any", "every", "your"),
            "(?:(?:of" + _S + ")?(?:the|your)" + _S + ")?" + _NOUN,
        ),
        _seq(
            _VERB,
            "(?:"
            + _words("all", "everything", "anything", "what")
            + _S
            + ")?(?:(?:that|which)"
            + _S
            + ")?"
            + _words(
                "you were told",
                "you have been told",
                "you ve been told",
                "you were given",
                "you have been given",
                "you were instructed",
                "you have been instructed",
                "you were taught",
                "you were programmed",
                "i said before",
                "i told you before",
                "i told you earlier",
            ),
        ),
        _seq(
            _VERB,
            "(?:"
            + _words("all", "everything", "anything", "the", "what", "is", "was", "written", "text")
            + _S
            + "){1,3}"
            + _words("above", "so far", "until now", "up to now", "before this"),
        )
        + "(?![a-z])",
    )
)
_ROLE = "|".join(
    (
        _seq("you", _words("are", "re"), "now", _ARTICLE + _BAD) + "(?![a-z])",
        _seq(
            _words("act", "behave", "respond", "roleplay", "role play", "pretend", "answer"),
            _words("as", "like", "to be", "you are", "as if you are", "as if you were"),
            _ARTICLE + _BAD,
        )
        + "(?![a-z])",
        _seq(
            _words("from now on", "starting now", "from this point on", "from this moment on"),
            "(?:you|you will|you ll|you are going to|you must|you shall|you should|you are)".replace(" ", _S),
            _words(
                "act as",
                "behave as",
                "pretend",
                "roleplay",
                "role play",
                "ignore",
                "disregard",
                "forget",
                "obey only",
                "no longer",
                "not follow",
                "not obey",
                "not refuse",
                "never refuse",
                "have no rules",
                "have no restrictions",
                "have no limits",
                "have no filters",
                "be dan",
                "be an unrestricted",
                "be unrestricted",
                "be unfiltered",
                "be an unfiltered",
                "be jailbroken",
                "bypass",
                "break free",
                "operate without",
                "respond without",
                "answer without",
            ),
        )
        + "(?![a-z])",
        _seq(
            "you",
            _words("are", "re"),
            "no longer",
            _words(
                "bound",
                "restricted",
                "limited",
                "an ai",
                "an assistant",
                "chatgpt",
                "claude",
                "required",
                "subject",
                "constrained",
            ),
        )
        + "(?![a-z])",
        _seq(
            "you",
            _words("have", "ve"),
            "no",
            _words(
                "rules",
                "restrictions",
                "limits",
                "limitations",
                "filters",
                "guidelines",
                "ethical",
                "moral",
                "content policy",
            ),
        )
        + "(?![a-z])",
    )
)
_REVEAL = _words(
    "reveal",
    "print",
    "show",
    "display",
    "output",
    "repeat",
    "tell",
    "give",
    "leak",
    "dump",
    "expose",
    "disclose",
    "share",
    "recite",
    "write out",
    "spell out",
    "provide",
    "paste",
    "echo",
    "what is",
    "what are",
    "what were",
    "what was",
)
_SECRET_NOUN = _words(
    "system prompt",
    "system message",
    "system instructions?",
    "initial prompt",
    "initial instructions?",
    "original prompt",
    "original instructions?",
    "hidden prompt",
    "hidden instructions?",
    "secret instructions?",
    "first instructions?",
    "pre prompt",
    "preprompt",
    "instructions",
    "prompt",
)
_EXTRACT = "|".join(
    (
        _seq(
            _REVEAL,
            "(?:(?:me|us|all|of|exactly|verbatim|back|out|to me)" + _S + "){0,3}your",
            "(?:(?:full|entire|complete|exact|confidential|internal|hidden|secret|original|initial)"
            + _S
            + ")?"
            + _SECRET_NOUN,
        )
        + "(?![a-z])",
        _seq(
            _words("reveal", "leak", "dump", "expose", "disclose", "repeat", "recite"),
            "(?:(?:me|us|to me)" + _S + ")?" + _words("the", "this", "that"),
            "(?:(?:full|entire|complete|exact|hidden|secret|original|initial|confidential)"
            + _S
            + ")?"
            + _words(
                "system prompt",
                "system message",
                "system instructions?",
                "initial instructions?",
                "hidden instructions?",
                "initial prompt",
                "hidden prompt",
            ),
        )
        + "(?![a-z])",
        _seq(
            _words("repeat", "print", "output", "recite", "echo", "copy"),
            _words(
                "all",
                "everything",
                "the text",
                "the words",
                "the content",
                "the instructions",
                "the prompt",
                "all the text",
                "all the words",
                "every word",
                "the messages",
            ),
            _words("above", "before this", "preceding"),
        )
        + "(?![a-z])",
    )
)
_JAIL = "|".join(
    (
        _seq(
            _words(
                "you are",
                "you re",
                "act as",
                "become",
                "pretend to be",
                "roleplay as",
                "enable",
                "activate",
                "you will be",
                "you are going to be",
            ),
            "(?:(?:a|the|now)" + _S + ")?dan",
        )
        + "(?![a-z])",
        _seq("dan", _words("mode", "jailbreak", "prompt")) + "(?![a-z])",
        _seq(
            _words("dan", "you can", "can now", "stands for", "which means", "which stands for"),
            "do anything now",
        )
        + "(?![a-z])",
        _seq(
            _words(
                "you",
                "you are",
                "you re",
                "chatgpt",
                "gpt",
                "assistant",
                "simulate",
                "pretend",
                "act as",
                "now in",
                "stay in",
                "roleplay",
                "chatgpt with",
                "gpt with",
                "assistant with",
                "ai with",
                "model with",
            ),
            "(?:(?:a|the|in|into|an|are|now|enable|enabled|with|be|to)" + _S + "){0,3}" + "developer mode",
        )
        + "(?![a-z])",
        _seq("developer mode", _words("output", "response", "responses", "enabled and", "policies"))
        + "(?![a-z])",
    )
)
_PATTERNS = {"override": _OVERRIDE, "role_hijack": _ROLE, "extraction": _EXTRACT, "jailbreak": _JAIL}
_MESSAGES = {
    "override": "prompt injection: instruction override",
    "role_hijack": "prompt injection: role hijack",
    "extraction": "prompt injection: system-prompt extraction",
    "jailbreak": "prompt injection: jailbreak",
}
# Every phrase contains at least one of these words; short texts without any are skipped
# before the (fast, but fixed-overhead) RE2 scan. tests/test_detectors.py checks the set.
ANCHORS = frozenset(
    {
        "ignore",
        "disregard",
        "forget",
        "override",
        "bypass",
        "abandon",
        "discard",
        "neglect",
        "dismiss",
        "unrestricted",
        "unfiltered",
        "uncensored",
        "unbound",
        "unlimited",
        "jailbroken",
        "evil",
        "rogue",
        "malicious",
        "amoral",
        "unethical",
        "dan",
        "free",
        "longer",
        "bound",
        "without",
        "developer",
        "god",
        "act",
        "behave",
        "pretend",
        "roleplay",
        "role",
        "obey",
        "follow",
        "refuse",
        "rules",
        "restrictions",
        "limits",
        "limitations",
        "filters",
        "guidelines",
        "ethical",
        "moral",
        "content",
        "break",
        "prompt",
        "message",
        "instruction",
        "instructions",
        "preprompt",
        "above",
        "before",
        "preceding",
        "anything",
    }
)
_ANCHOR_BYTES = frozenset(a.encode() for a in ANCHORS)
_WORD_TABLE = bytes(b + 32 if 65 <= b <= 90 else b if 97 <= b <= 122 else 32 for b in range(256))
GATE_MAX_CHARS = 200

_NEGATED = re.compile(r"(?i)(?:\bnot|\bnever|n[^a-z]?t|\bdont|\bno)[^a-z]+(?:[a-z]+[^a-z]+)?$")


class PromptInjectionDetector(Detector):
    """Instruction override, role hijack, system-prompt extraction and jailbreak phrases."""

    name = "prompt_injection"
    option_names = frozenset({"categories"})

    def __init__(self, options: Mapping[str, object]) -> None:
        """Compile the selected categories into one pattern."""
        super().__init__(options)
        categories = self.str_list(options, "categories", CATEGORIES)
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise self.error("categories", f"has unknown values {unknown} (known: {list(CATEGORIES)})")
        if not categories:
            raise self.error("categories", "must not be empty")
        body = "|".join(f"(?P<{c}>{_PATTERNS[c]})" for c in CATEGORIES if c in categories)
        self._pattern = re2.compile(r"(?i)\b(?:" + body.replace("(?![a-z])", r"\b") + ")")

    @property
    def gate_pattern(self) -> str:
        """The RE2 pattern; on ASCII text (which folding leaves unchanged) it matches iff a phrase does."""
        return str(self._pattern.pattern)

    def find(self, text: str) -> Iterator[Hit]:
        """Yield injection phrases, with offsets into the original text."""
        if len(text) < GATE_MAX_CHARS and text.isascii():
            if _ANCHOR_BYTES.isdisjoint(text.encode("ascii").translate(_WORD_TABLE).split()):
                return
        folded = Folded(text)
        if len(folded.text) < GATE_MAX_CHARS and _ANCHOR_BYTES.isdisjoint(
            folded.text.encode("utf-8", "ignore").translate(_WORD_TABLE).split()
        ):
            return
        for m in self._pattern.finditer(folded.text):
            if m.lastgroup == "override" and _NEGATED.search(folded.text, max(0, m.start() - 16), m.start()):
                continue
            start, end = folded.original_span(m.start(), m.end())
            yield start, end, _MESSAGES[m.lastgroup or "override"]
