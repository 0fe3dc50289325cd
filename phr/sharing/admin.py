from django.contrib import admin

from phr.sharing.models import AccessEvent, FailedRedemption, Share


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shares change only through the patient's own pages; audit rows never change at all."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Share)
class ShareAdmin(ReadOnlyAdmin):
    list_display = ["label", "owner", "created_at", "expires_at", "revoked_at", "locked_at"]
    list_filter = ["allow_download"]
    exclude = ["code_hash", "token_hash", "pin_hash"]


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "share", "ip", "visitor"]
    list_filter = ["kind"]


@admin.register(FailedRedemption)
class FailedRedemptionAdmin(ReadOnlyAdmin):
    list_display = ["at", "via", "reason", "ip", "share"]
    list_filter = ["reason", "via"]
