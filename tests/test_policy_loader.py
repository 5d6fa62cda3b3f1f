"""Policy files -> PolicySet: the documented format, the default policy, and errors that name line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.policy.detectors import DETECTOR_NAMES, GROUPS
from daemon.policy.loader import (
    PolicyError,
    default_policy_text,
    load_policy_file,
    parse_policy,
    rule_id_for,
)
from daemon.policy.model import Action, Mode

# The example of the README's "Policy files" section, verbatim.
EXAMPLE = r"""
[policies.default]
description = "Production: block secrets and injection, redact personal data"
mode = "enforce"                     # or "monitor": report every finding, block nothing
max_input_chars = 50000
models = { allow = ["gpt-4o*", "claude-*"], deny = ["*-preview"] }   # globs; deny wins
operations = { allow = ["chat", "completion", "embedding"] }

[[policies.default.rules]]
id = "pii.email"
detector = "email"
action = "redact"
allow_domains = ["example.com"]      # example.com and its subdomains are never reported
applies_to = ["input"]               # in what is sent to models (pii.email.answers: in answers)

[[policies.default.rules]]
id = "pii.phone"
detector = "phone"
action = "redact"
regions = ["US", "GB"]

[[policies.default.rules]]
id = "pii.credit_card"
detector = "credit_card"
action = "block"
allow = ["4111 1111 1111 1111"]      # the test card your own docs use

[[policies.default.rules]]
id = "pii.ip_address"
detector = "ip_address"
action = "monitor"
include_private = false

[[policies.default.rules]]
id = "secrets.aws_access_key"
detector = "aws_access_key"          # no action: "block"

[[policies.default.rules]]
id = "secrets.generic_secret"
detector = "generic_secret"
min_entropy = 3.5
applies_to = ["input", "output"]     # also in what models answer (the default: both)

[[policies.default.rules]]
id = "pii.email.answers"
detector = "email"                   # a second rule for one detector: for the other direction
action = "block"
applies_to = ["output"]

[[policies.default.rules]]
id = "manipulation.prompt_injection"
detector = "prompt_injection"
categories = ["override", "role_hijack", "extraction"]
message = "prompt injection attempt"

[[policies.default.rules]]
id = "custom.codename"
literal = "Project Falcon"
case_sensitive = false
action = "redact"
message = "internal code name"

[[policies.default.rules]]
id = "custom.ticket"
pattern = '\bTICKET-[0-9]{4,6}\b'    # RE2 syntax; single quotes keep backslashes as written
action = "monitor"

[[policies.default.rules]]
id = "custom.legacy"
literal = "legacy"
enabled = false                      # kept in the file, not applied

[policies.trial]
description = "Try rules on a team without blocking anyone"
mode = "monitor"

[[policies.trial.rules]]
id = "manipulation.prompt_injection"
detector = "prompt_injection"

[[policies.trial.rules]]
id = "pii.us_ssn"
detector = "us_ssn"
"""


def test_readme_example_parses_into_named_policies() -> None:
    ps = parse_policy(EXAMPLE, "example.toml")
    assert ps.names == ["default", "trial"] and len(ps.version) == 12
    d = ps.get("default")
    assert d is not None and ps.get("nope") is None
    assert d.mode is Mode.ENFORCE and d.max_input_chars == 50000
    assert d.models.allow == ("gpt-4o*", "claude-*") and d.models.deny == ("*-preview",)
    assert d.operations.allow == ("chat", "completion", "embedding") and d.operations.deny == ()
    by_id = {r.id: r for r in d.rules}
    assert "custom.legacy" not in by_id  # disabled
    assert by_id["pii.email"].options == {"allow_domains": ["example.com"]}
    assert by_id["pii.email"].applies_to == {"input"} and by_id["pii.email.answers"].applies_to == {"output"}
    assert by_id["secrets.generic_secret"].applies_to == {"input", "output"}
    assert by_id["pii.phone"].options == {"regions": ["US", "GB"]}
    assert by_id["secrets.aws_access_key"].action is Action.BLOCK
    assert by_id["custom.codename"].kind == "literal" and not by_id["custom.codename"].case_sensitive
    assert by_id["custom.ticket"].kind == "pattern" and by_id["custom.ticket"].action is Action.MONITOR
    t = ps.get("trial")
    assert t is not None and t.mode is Mode.MONITOR and t.max_input_chars == 100_000
    assert t.models.permits("anything") and [r.id for r in t.rules] == ["manipulation.prompt_injection", "pii.us_ssn"]


def test_version_is_a_hash_of_the_text() -> None:
    a = parse_policy(EXAMPLE)
    assert parse_policy(EXAMPLE).version == a.version
    assert parse_policy(EXAMPLE + "\n# a comment\n").version != a.version
    assert {p.version for p in a.policies.values()} == {a.version}


def test_default_policy_matches_the_design() -> None:
    ps = parse_policy(default_policy_text())
    assert ps.names == ["default"]
    p = ps.get("default")
    assert p is not None and p.mode is Mode.ENFORCE
    assert p.models.permits("any-model") and p.operations.permits("fine_tune")
    actions = {r.detector: r.action for r in p.rules}
    assert set(actions) == set(DETECTOR_NAMES)
    monitored = {"email", "phone", "ip_address"}
    for name, action in actions.items():
        assert action is (Action.MONITOR if name in monitored else Action.BLOCK), name
    assert {r.id for r in p.rules} >= {"pii.credit_card", "secrets.github_token", "manipulation.prompt_injection"}
    assert rule_id_for("us_ssn") == "pii.us_ssn" and rule_id_for("jwt") == "secrets.jwt"
    assert all(rule_id_for(d).split(".")[0] in GROUPS for d in DETECTOR_NAMES)


def test_missing_file_means_default_and_unreadable_file_is_an_error(tmp_path: Path) -> None:
    ps = load_policy_file(tmp_path / "absent.toml")
    assert ps.names == ["default"] and ps.version == parse_policy(default_policy_text()).version
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n[policies.default]\n")
    with pytest.raises(PolicyError, match="latin1.toml: not UTF-8"):
        load_policy_file(bad)
    good = tmp_path / "p.toml"
    good.write_text("[policies.a]\n[policies.b]\nmode = 'monitor'\n")
    assert load_policy_file(good).source == str(good)


def test_inline_rules_and_quoted_names_are_accepted() -> None:
    ps = parse_policy(
        '[policies."eu-strict"]\nmodels = ["mistral-*"]\n'
        'rules = [{ id = "c.x", literal = "x" }, { id = "pii.email", detector = "email", action = "monitor" }]\n'
    )
    p = ps.get("eu-strict")
    assert p is not None and p.models.allow == ("mistral-*",) and [r.id for r in p.rules] == ["c.x", "pii.email"]


def test_same_rule_id_in_two_policies_is_fine() -> None:
    ps = parse_policy(
        "[policies.a]\n[[policies.a.rules]]\nid = 'c.x'\nliteral = 'x'\n"
        "[policies.b]\n[[policies.b.rules]]\nid = 'c.x'\nliteral = 'y'\n"
    )
    assert ps.names == ["a", "b"]


# (case, file text, expected "FILE:LINE: field" prefix, words the message must contain)
RULES_HEAD = (
    "[policies.default]\nmode = 'enforce'\n\n[[policies.default.rules]]\nid = 'pii.email'\ndetector = 'email'\n\n"
)
ERRORS = [
    ("bad toml", "[policies.default]\nmode = = 'enforce'\n\n[policies.b]\n", "p.toml:2: invalid TOML",
     ["column"]),
    ("toml cut short", "[policies.default]\nmodels = { allow = ['*'\n", "p.toml:2: invalid TOML",
     ["end of the file"]),
    ("toml duplicate key", "[policies.default]\nmode = 'enforce'\nmode = 'monitor'\n", "p.toml:3: invalid TOML",
     ["column"]),
    ("unknown top-level", "[policies.default]\n\n[settings]\nx = 1\n", "p.toml:3: settings", ["unknown top-level"]),
    ("no policies", "# nothing\n", "p.toml: policies", ["no policy"]),
    ("bad policy name", "[policies.'a b']\n", "p.toml:1: policies.a b", ["policy names"]),
    ("unknown policy key", "[policies.default]\nmode = 'enforce'\nmax_chars = 5\n",
     "p.toml:3: policies.default", ["unknown key 'max_chars'"]),
    ("bad mode", "[policies.default]\n# mode = 'enforce'\nmode = 'audit'\n", "p.toml:3: policies.default.mode",
     ["enforce or monitor", "'audit'"]),
    ("mode wrong type", "[policies.default]\nmode = 1\n", "p.toml:2: policies.default.mode", ["enforce or monitor"]),
    ("max_input_chars string", "[policies.default]\nmax_input_chars = '10'\n",
     "p.toml:2: policies.default.max_input_chars", ["positive integer"]),
    ("max_input_chars zero", "[policies.default]\nmax_input_chars = 0\n",
     "p.toml:2: policies.default.max_input_chars", ["positive integer"]),
    ("max_input_chars bool", "[policies.default]\nmax_input_chars = true\n",
     "p.toml:2: policies.default.max_input_chars", ["positive integer"]),
    ("description type", "[policies.default]\ndescription = 3\n", "p.toml:2: policies.default.description",
     ["string"]),
    ("bad glob", "[policies.default]\nmode = 'enforce'\nmodels = { allow = ['gpt-[4o'] }\n",
     "p.toml:3: policies.default.models.allow", ["bad glob 'gpt-[4o'"]),
    ("glob not a string", "[policies.default]\noperations = { deny = ['chat', 3] }\n",
     "p.toml:2: policies.default.operations.deny", ["list of non-empty strings"]),
    ("empty glob", "[policies.default]\nmodels = ['']\n", "p.toml:2: policies.default.models", ["non-empty"]),
    ("glob table key", "[policies.default]\nmodels = { allow = ['*'], block = ['x'] }\n",
     "p.toml:2: policies.default.models", ["unknown key 'block'"]),
    ("models wrong type", "[policies.default]\nmodels = 'gpt-4o'\n", "p.toml:2: policies.default.models",
     ["allow and/or deny"]),
    ("rules not an array", "[policies.default]\nrules = 'x'\n", "p.toml:2: policies.default.rules",
     ["array of tables"]),
    ("unknown detector", RULES_HEAD + "[[policies.default.rules]]\nid = 'pii.passport'\ndetector = 'passport'\n",
     "p.toml:10: policies.default.rules[1] (pii.passport).detector", ["unknown detector 'passport'"]),
    ("detector wrong type", RULES_HEAD + "[[policies.default.rules]]\nid = 'x'\ndetector = ['email']\n",
     "p.toml:10: policies.default.rules[1] (x).detector", ["unknown detector"]),
    ("bad pattern", RULES_HEAD + "[[policies.default.rules]]\nid = 'custom.ticket'\naction = 'block'\n"
     "pattern = '(TICKET-[0-9]+'\n", "p.toml:11: policies.default.rules[1] (custom.ticket).pattern",
     ["invalid pattern", "missing )"]),
    ("backreference is not RE2", RULES_HEAD + "[[policies.default.rules]]\nid = 'custom.rep'\npattern = '(a)\\1'\n",
     "p.toml:10: policies.default.rules[1] (custom.rep).pattern", ["invalid pattern"]),
    ("lookahead is not RE2", RULES_HEAD + "[[policies.default.rules]]\nid = 'custom.la'\npattern = 'a(?=b)'\n",
     "p.toml:10: policies.default.rules[1] (custom.la).pattern", ["invalid pattern"]),
    ("empty literal", RULES_HEAD + "[[policies.default.rules]]\nid = 'custom.l'\nliteral = ''\n",
     "p.toml:10: policies.default.rules[1] (custom.l).literal", ["non-empty string"]),
    ("duplicate rule id", RULES_HEAD + "[[policies.default.rules]]\nid = 'pii.email'\nliteral = 'x'\n",
     "p.toml:9: policies.default.rules[1].id", ["duplicate rule id 'pii.email'"]),
    ("detector twice", RULES_HEAD + "[[policies.default.rules]]\nid = 'pii.email2'\ndetector = 'email'\n",
     "p.toml:10: policies.default.rules[1] (pii.email2).detector", ["already used by rule 'pii.email'"]),
    ("unknown rule key", RULES_HEAD + "[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\nseverity = 'high'\n",
     "p.toml:11: policies.default.rules[1] (c.x)", ["unknown key 'severity'"]),
    ("unknown detector option", RULES_HEAD + "[[policies.default.rules]]\nid = 'pii.phone'\ndetector = 'phone'\n"
     "allow_domains = ['x.com']\n", "p.toml:11: policies.default.rules[1] (pii.phone)",
     ["unknown option 'allow_domains'"]),
    ("option wrong type", "[policies.default]\n[[policies.default.rules]]\nid = 'pii.email'\ndetector = 'email'\n"
     "allow_domains = 'example.com'\n", "p.toml:5: policies.default.rules[0] (pii.email)",
     ["'allow_domains' must be a list of strings"]),
    ("option out of range", "[policies.default]\n[[policies.default.rules]]\nid = 's.g'\ndetector = 'generic_secret'\n"
     "min_entropy = 9\n", "p.toml:5: policies.default.rules[0] (s.g)", ["'min_entropy' must be between 0 and 8"]),
    ("bad action", RULES_HEAD + "[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\naction = 'deny'\n",
     "p.toml:11: policies.default.rules[1] (c.x).action", ["block, redact or monitor", "'deny'"]),
    ("enabled wrong type", RULES_HEAD + "[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\nenabled = 'no'\n",
     "p.toml:11: policies.default.rules[1] (c.x).enabled", ["true or false"]),
    ("case_sensitive wrong type", "[policies.default]\n[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\n"
     "case_sensitive = 0\n", "p.toml:5: policies.default.rules[0] (c.x).case_sensitive", ["true or false"]),
    ("message wrong type", "[policies.default]\n[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\nmessage = 1\n",
     "p.toml:5: policies.default.rules[0] (c.x).message", ["string"]),
    ("no id", "[policies.a]\n[[policies.a.rules]]\nid = 'c.x'\nliteral = 'x'\n\n"
     "[policies.b]\n[[policies.b.rules]]\nliteral = 'x'\n", "p.toml:7: policies.b.rules[0]", ["needs an id"]),
    ("bad id", "[policies.default]\n[[policies.default.rules]]\nid = 'Custom Rule'\nliteral = 'x'\n",
     "p.toml:3: policies.default.rules[0]", ["lowercase"]),
    ("two kinds", "[policies.default]\n[[policies.default.rules]]\nid = 'c.x'\nliteral = 'x'\npattern = 'y'\n",
     "p.toml:5: policies.default.rules[0] (c.x)", ["literal and pattern", "exactly one"]),
    ("no kind", "[policies.default]\n[[policies.default.rules]]\nid = 'c.x'\naction = 'block'\n",
     "p.toml:3: policies.default.rules[0] (c.x)", ["one of detector, literal or pattern"]),
    ("rule not a table", "[policies.default]\nrules = [1]\n", "p.toml:2: policies.default.rules[0]",
     ["must be a table"]),
    ("disabled rules are validated too", "[policies.default]\n[[policies.default.rules]]\nid = 'c.x'\n"
     "pattern = '(('\nenabled = false\n", "p.toml:4: policies.default.rules[0] (c.x).pattern", ["invalid pattern"]),
]


@pytest.mark.parametrize(("text", "where", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_line_and_the_field(text: str, where: str, words: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.toml")
    msg = str(info.value)
    assert msg.startswith(where + ":") or msg.startswith(where + " "), msg
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg


def test_errors_point_into_the_right_policy() -> None:
    # The same key and the same rule id appear earlier in another policy: the error must
    # point at the offending occurrence, not the first line that looks alike.
    text = (
        "[policies.a]\nmode = 'enforce'\n[[policies.a.rules]]\nid = 'c.x'\nliteral = 'x'\n\n"
        "[policies.b]\nmode = 'monitr'\n[[policies.b.rules]]\nid = 'c.x'\nliteral = 'x'\n"
    )
    with pytest.raises(PolicyError, match=r"^p\.toml:8: policies\.b\.mode:"):
        parse_policy(text, "p.toml")
    text = text.replace("'monitr'", "'monitor'") + "[[policies.b.rules]]\nid = 'c.x'\nliteral = 'z'\n"
    with pytest.raises(PolicyError, match=r"^p\.toml:13: policies\.b\.rules\[1\]\.id: duplicate"):
        parse_policy(text, "p.toml")


def test_errors_in_inline_rules_name_the_rule_line() -> None:
    text = (
        "[policies.default]\n"
        "mode = 'enforce'\n"
        "rules = [\n"
        "  { id = 'pii.email', detector = 'email', action = 'redact' },\n"
        "  {detector='nope', id='c.y', action='block'},\n"
        "]\n"
    )
    with pytest.raises(PolicyError, match=r"^p\.toml:5: policies\.default\.rules\[1\] \(c\.y\)\.detector: unknown"):
        parse_policy(text, "p.toml")
    text = text.replace("detector='nope', id='c.y'", "detector='phone', id='pii.email'")
    with pytest.raises(PolicyError, match=r"^p\.toml:5: policies\.default\.rules\[1\]\.id: duplicate"):
        parse_policy(text, "p.toml")
    one_line = "[policies.default]\nmode = 'enforce'\nrules = [{id = 'a', detector = 'nope'}]\n"
    with pytest.raises(PolicyError, match=r"^p\.toml:3: "):
        parse_policy(one_line, "p.toml")


MANY_PROBLEMS = """\
[policies.default]
mode = "enforse"
max_input_chars = 0
models = { allow = ["gpt-[4"], deny = [""] }

[[policies.default.rules]]
id = "pii.email"
detector = "email"
action = "deny"

[[policies.default.rules]]
id = "Bad Id"
literal = "x"

[[policies.default.rules]]
id = "custom.re"
pattern = "(unclosed"

[policies.second]
colour = "blue"
"""


def test_every_problem_is_reported_each_with_its_line() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(MANY_PROBLEMS, "p.toml")
    e = info.value
    assert str(e) == "\n".join(e.errors)
    assert [m.split(": ", 1)[0] for m in e.errors] == [
        "p.toml:2", "p.toml:3", "p.toml:4", "p.toml:4", "p.toml:9", "p.toml:12", "p.toml:17", "p.toml:20"]
    assert e.errors == [
        "p.toml:2: policies.default.mode: must be enforce or monitor, not 'enforse'",
        "p.toml:3: policies.default.max_input_chars: must be a positive integer",
        "p.toml:4: policies.default.models.allow: bad glob 'gpt-[4': unbalanced brackets",
        "p.toml:4: policies.default.models.deny: must be a list of non-empty strings (glob patterns)",
        "p.toml:9: policies.default.rules[0] (pii.email).action: must be block, redact or monitor, not 'deny'",
        "p.toml:12: policies.default.rules[1]: id must be lowercase letters, digits, '.', '_' or '-' (pii.email)",
        "p.toml:17: policies.default.rules[2] (custom.re).pattern: " + e.errors[6].split(".pattern: ", 1)[1],
        "p.toml:20: policies.second: unknown key 'colour' (known: description, max_input_chars, mode, models, "
        "operations, rules)",
    ]
    assert "invalid pattern" in e.errors[6]


def test_at_most_twenty_problems_are_listed() -> None:
    text = "[policies.default]\n" + "".join(f"[[policies.default.rules]]\nid = 'r{i}'\naction = 'x'\nliteral = 'y'\n"
                                            for i in range(30))
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.toml")
    assert len(info.value.errors) == 30
    lines = str(info.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 10 more errors in the file"
    assert all(line.startswith("p.toml:") for line in lines[:20])
