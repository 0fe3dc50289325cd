"""The audit log is append-only, and a share's status follows its dates."""

from datetime import timedelta

import pytest
from django.utils import timezone

from phr.sharing.models import AccessEvent, Event, FailedRedemption, Share, Status
from tests.sharing.conftest import make_share

pytestmark = pytest.mark.django_db


def test_an_access_event_cannot_be_changed_or_deleted(patient, ct):
    share, _ = make_share(patient, [ct])
    event = AccessEvent.objects.get(share=share, kind=Event.CREATED)
    event.detail = "rewritten"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AccessEvent.objects.filter(share=share).update(detail="rewritten")
    with pytest.raises(TypeError):
        AccessEvent.objects.filter(share=share).delete()
    assert AccessEvent.objects.get(pk=event.pk).detail != "rewritten"


def test_the_failure_log_is_append_only_too():
    row = FailedRedemption.objects.create(via="code", reason="unknown", ip="192.0.2.1")
    with pytest.raises(TypeError):
        row.save()
    with pytest.raises(TypeError):
        FailedRedemption.objects.all().delete()


def test_deleting_the_account_still_removes_its_shares_and_their_log(patient, ct):
    share, _ = make_share(patient, [ct])
    patient.delete()
    assert not Share.objects.filter(pk=share.pk).exists()
    assert not AccessEvent.objects.filter(share_id=share.pk).exists()


def test_status_revoked_beats_locked_beats_expired(patient, ct):
    share, _ = make_share(patient, [ct])
    assert share.status == Status.ACTIVE
    share.expires_at = timezone.now() - timedelta(seconds=1)
    assert share.status == Status.EXPIRED
    share.locked_at = timezone.now()
    assert share.status == Status.LOCKED
    share.revoked_at = timezone.now()
    assert share.status == Status.REVOKED


def test_a_share_cannot_hold_another_patients_study(patient, other_study):
    with pytest.raises(ValueError):
        make_share(patient, [other_study])


def test_pin_check(patient, ct):
    share, _ = make_share(patient, [ct], pin="739154")
    assert share.check_pin("739154")
    assert share.check_pin(" 739 154 ")
    assert not share.check_pin("739155")
    assert not share.check_pin("")
    no_pin, _ = make_share(patient, [ct])
    assert no_pin.check_pin("")
