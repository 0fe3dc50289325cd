"""The sharing app's answers to phr.vault.access for a browser without an account: a doctor's,
holding shares (phr.sharing.doctor). Registered when the app starts (apps.py)."""

from phr.sharing import audit, doctor
from phr.sharing.services import Client
from phr.vault.access import Grantee


class ShareGrantee(Grantee):
    def studies(self, request):
        return doctor.shared_studies(request)

    def holds_any(self, request) -> bool:
        return doctor.holds_any(request)

    def may_download(self, request, study) -> bool:
        return doctor.may_download(request, study)

    def access_ends_at(self, request, study) -> float:
        return doctor.access_ends_at(request, study)

    def record(self, request, study, seen) -> None:
        shares = doctor.shares_holding(request, study)
        client = Client.from_request(request, visitor=doctor.visitor_tag(request))
        audit.record_seen(shares, client, study, seen)
