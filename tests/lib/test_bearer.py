"""phr.lib.bearer: tokens found by a public prefix, checked against a keyed hash only."""

from phr.lib.bearer import BearerKind

ORG = BearerKind(marker="phrorg", purpose="org-token")
READ = BearerKind(marker="phrdw", purpose="dicomweb-token")


def test_a_token_is_found_by_its_prefix_and_matches_only_its_own_hash():
    prefix, plaintext, key_hash = READ.issue()
    assert plaintext.startswith(f"phrdw_{prefix}_") and len(plaintext.split("_", 2)[2]) == 43
    assert READ.prefix_of(plaintext) == prefix
    assert READ.matches(key_hash, plaintext)
    assert not READ.matches(key_hash, plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"))
    assert plaintext not in key_hash and plaintext.split("_", 2)[2] not in key_hash


def test_another_kinds_token_is_not_one_of_these():
    _prefix, plaintext, key_hash = ORG.issue()
    assert READ.prefix_of(plaintext) is None
    # Even with the marker changed, the other kind's hash purpose doesn't match.
    assert not READ.matches(key_hash, plaintext)


def test_malformed_tokens_have_no_prefix():
    for plaintext in ("", "phrdw", "phrdw_", "phrdw_abcd", "phrdw__secret", "phrdw_abcd_"):
        assert READ.prefix_of(plaintext) is None
