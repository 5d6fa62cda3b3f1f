"""``--body-file``: what a JSONL corpus may hold, and how each line becomes a request body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigov_cli.loadtest.corpus import load_corpus
from aigov_cli.loadtest.units import UsageError


def test_objects_and_strings_become_request_bodies(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text('{"model": "m", "operation": "embed", "input_text": "pär"}\n\n"just text"\n', encoding="utf-8")
    corpus = load_corpus(f)
    assert [json.loads(b) for b in corpus.bodies] == [
        {"model": "m", "operation": "embed", "input_text": "pär", "metadata": {"source": "loadtest"}},
        {"model": "gpt-4o", "operation": "chat", "input_text": "just text", "metadata": {"source": "loadtest"}},
    ]
    assert "pär".encode() in corpus.bodies[0]  # non-ASCII text is sent as UTF-8, not escaped


def test_a_lone_surrogate_is_sent_as_the_file_wrote_it(tmp_path: Path) -> None:
    # "\ud800" is valid JSON but not encodable as UTF-8: the body keeps the JSON escape (the
    # daemon then answers 422), where encoding the decoded text raised UnicodeEncodeError.
    f = tmp_path / "c.jsonl"
    f.write_text('{"model": "m", "operation": "chat", "input_text": "a\\ud800b"}\n"\\udcff"\n', encoding="utf-8")
    corpus = load_corpus(f)
    assert corpus.bodies[0] == (b'{"model":"m","operation":"chat","input_text":"a\\ud800b",'
                                b'"metadata":{"source":"loadtest"}}')
    assert json.loads(corpus.bodies[1])["input_text"] == "\udcff"
    for body in corpus.bodies:
        body.decode("utf-8")


@pytest.mark.parametrize(("metadata", "sent"), [
    ({"team": "search"}, {"team": "search", "source": "loadtest"}),  # the line's own fields are kept
    ({"source": "replay"}, {"source": "replay"}),  # a source the line sets is its own
    (None, None),  # not an object: sent as written, for the daemon to refuse
    ("x", "x"),
])
def test_lines_are_marked_as_load_test_traffic_unless_they_say_otherwise(
    tmp_path: Path, metadata: object, sent: object
) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"model": "m", "operation": "chat", "input_text": "t", "metadata": metadata}) + "\n")
    assert json.loads(load_corpus(f).bodies[0])["metadata"] == sent


@pytest.mark.parametrize(("text", "message"), [(b"\xff\n", ":1: not valid JSON"), (b"[1]\n", ":1: expected a JSON"),
                                               (b"\n\n", "no requests")])
def test_bad_lines_are_usage_errors(tmp_path: Path, text: bytes, message: str) -> None:
    f = tmp_path / "c.jsonl"
    f.write_bytes(text)
    with pytest.raises(UsageError, match=message):
        load_corpus(f)
