"""flrlib.chat: the message validator and left truncation of long contexts (real SmolLM2 tokenizer)."""
import pytest

from flrlib import chat

LONG_PROMPT = " ".join(f"word{i}" for i in range(200)) + " THE-END-OF-PROMPT"  # ~740 tokens with the template
RESPONSE = "A short response."
FOLLOWUP = "What do you mean?"


def _conv(*turns):
    return [{"role": r, "content": c} for r, c in turns]


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny.tokenizer


def test_feedback_truncation_keeps_request_tail_of_prompt_and_response(tok):
    ctx, role = chat.flr_context(_conv(("user", LONG_PROMPT), ("assistant", RESPONSE)), "feedback")
    full = chat.encode(tok, ctx, role, [FOLLOWUP])
    enc = chat.encode(tok, ctx, role, [FOLLOWUP], max_tokens=300)
    assert len(full.prefix) > 600  # the case of the report: a long p, a 300-token budget
    text = tok.decode(enc.prefix)
    assert chat.FEEDBACK_REQUEST in text  # the fixed request, verbatim
    assert "THE-END-OF-PROMPT" in text and "word0 " not in text  # p cut from the left, its tail kept
    assert text.index(chat.FEEDBACK_REQUEST) < text.index("THE-END-OF-PROMPT") < text.index(RESPONSE)  # r kept
    assert not enc.over_budget and len(enc.prefix) + len(enc.targets[0]) <= 300
    assert len(enc.prefix) >= 280  # the budget is used, not shrunk to a few tokens
    assert enc.truncated_tokens == len(full.prefix) - len(enc.prefix)


def test_base_truncation_keeps_about_budget_and_the_system_message(tok):
    conv = _conv(("system", "Be terse."), ("user", "Hi!"), ("assistant", "Hello."), ("user", LONG_PROMPT),
                 ("assistant", RESPONSE))
    ctx, role = chat.flr_context(conv, "base")
    enc = chat.encode(tok, ctx, role, [FOLLOWUP], max_tokens=300)
    text = tok.decode(enc.prefix)
    assert "Be terse." in text and "Hello." not in text  # earlier pair dropped, system message kept
    assert "THE-END-OF-PROMPT" in text and "word0 " not in text and RESPONSE in text
    assert not enc.over_budget and 280 <= len(enc.prefix) + len(enc.targets[0]) <= 300


def test_protected_part_over_budget_is_flagged(tok):
    ctx, role = chat.flr_context(_conv(("user", "Hi"), ("assistant", LONG_PROMPT)), "feedback")
    enc = chat.encode(tok, ctx, role, [FOLLOWUP], max_tokens=100)
    assert enc.over_budget and chat.FEEDBACK_REQUEST in tok.decode(enc.prefix)


@pytest.mark.parametrize("turns, error", [
    ([("user", "a"), ("user", "b")], r"messages\[1\]: two 'user' turns in a row"),
    ([("user", "a"), ("assistant", "b"), ("assistant", "c")], r"messages\[2\]: two 'assistant' turns in a row"),
    ([("assistant", "a"), ("user", "b")], r"messages\[0\]: the first turn must be 'user'"),
    ([("system", "s"), ("assistant", "a")], r"messages\[1\]: the first turn must be 'user'"),
    ([("user", "a"), ("system", "s"), ("assistant", "b")], r"messages\[1\]: a 'system' message is only allowed first"),
    ([("system", "s"), ("system", "t"), ("user", "a")], r"messages\[1\]: a 'system' message is only allowed first"),
])
def test_check_messages_rejects_role_order_violations(turns, error):
    with pytest.raises(ValueError, match=error):
        chat.check_messages(_conv(*turns))


def test_check_messages_accepts_alternating_turns_and_names_the_caller():
    chat.check_messages(_conv(("user", "a")))
    chat.check_messages(_conv(("system", ""), ("user", "a"), ("assistant", "b"), ("user", "c")))
    with pytest.raises(ValueError, match=r"conversation\[2\]: two 'assistant' turns"):
        chat.flr_context(_conv(("user", "a"), ("assistant", "b"), ("assistant", "c")))
    with pytest.raises(ValueError, match=r"context\[1\]: two 'user' turns"):
        chat.encode(None, _conv(("user", "a")), "user", ["b"])  # the target's role must follow the context too


def _reference(tok, ctx, role, targets, max_tokens):
    return chat.Encoder(tok, targets, None, max_tokens, reuse=False).encode(ctx, role)


@pytest.mark.parametrize("layout", ["base", "feedback"])
def test_encoder_tokenises_targets_once_and_gives_the_reference_ids(tok, convs, layout):
    """The Encoder checks the boundary in full once per template and layout, then tokenises each prefix once; its
    ids equal the per-conversation full check's, truncated rows included."""
    targets = ["That answers my question perfectly.", " Huh? ", "Thanks, that helps!"]
    long = _conv(("user", "Hi!"), ("assistant", "Hello."), ("user", LONG_PROMPT), ("assistant", RESPONSE))
    rows = convs + [long, _conv(("system", "Be terse."), ("user", "2+2?"), ("assistant", "4"))]
    enc = chat.Encoder(tok, targets, None, 300)
    for conv in rows:
        ctx, role = chat.flr_context(conv, layout)
        got, ref = enc.encode(ctx, role), _reference(tok, ctx, role, targets, 300)
        assert (got.prefix, got.targets, got.truncated_tokens, got.over_budget) == \
               (ref.prefix, ref.targets, ref.truncated_tokens, ref.over_budget)
    assert enc.full_checks == 1


def test_encoder_without_special_tokens_checks_every_conversation(tok):
    saved = tok.chat_template
    try:
        tok.chat_template = "{% for m in messages %}{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
        enc = chat.Encoder(tok, ["Good.", "Bad."])
        for q in ("Hi", "What is up?"):
            got = enc.encode(_conv(("user", q), ("assistant", "Fine.")), "user")
            assert got.targets == _reference(tok, _conv(("user", q), ("assistant", "Fine.")), "user",
                                             ["Good.", "Bad."], None).targets
        assert enc.full_checks == 2
    finally:
        tok.chat_template = saved
