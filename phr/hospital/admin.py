"""Site admins register hospitals here (or with `manage.py hospital`). Token secrets are shown
once, in a message, when the "issue a token" action runs; the admin never sees them again."""

from django.contrib import admin, messages

from phr.hospital.models import ApiToken, DepositCode, DicomNode, Organisation


class DicomNodeInline(admin.TabularInline):
    model = DicomNode
    extra = 0
    fields = ["ae_title", "network", "created_at"]
    readonly_fields = ["created_at"]


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    can_delete = False
    fields = ["label", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request, obj=None):
        return False  # tokens are issued by the action, which shows the secret once


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    search_fields = ["name"]
    inlines = [DicomNodeInline, ApiTokenInline]
    actions = ["issue_token"]

    @admin.action(description="Issue a new API token (shown once)")
    def issue_token(self, request, queryset):
        for organisation in queryset:
            _token, plaintext = ApiToken.issue(organisation, label=f"issued by {request.user}")
            messages.warning(
                request,
                f"New token for {organisation} (copy it now, it won't be shown again): {plaintext}",
            )


@admin.register(DepositCode)
class DepositCodeAdmin(admin.ModelAdmin):
    # Read-only: codes belong to patients, who create and stop them. Admins may look, not act.
    list_display = ["label", "owner", "organisation", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = [field.name for field in DepositCode._meta.fields]

    def has_add_permission(self, request):
        return False
