"""Register hospitals from the command line: organisations, their API tokens and DICOM nodes.

manage.py hospital add "St Mary's Hospital"
manage.py hospital token "St Mary's Hospital" [--label "PACS router"]
manage.py hospital node "St Mary's Hospital" --ae STMARYS_PACS --network 10.1.2.0/24
manage.py hospital revoke-token <prefix>
manage.py hospital list
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from phr.hospital.models import ApiToken, DicomNode, Organisation


class Command(BaseCommand):
    help = "Register hospitals (organisations), issue their API tokens and DICOM nodes."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("add").add_argument("name")
        token = sub.add_parser("token")
        token.add_argument("name")
        token.add_argument("--label", default="")
        node = sub.add_parser("node")
        node.add_argument("name")
        node.add_argument("--ae", required=True, help="the node's calling AE title")
        node.add_argument("--network", required=True, help="source IP or CIDR, e.g. 10.1.2.0/24")
        sub.add_parser("revoke-token").add_argument("prefix")
        sub.add_parser("list")

    def handle(self, *args, action, **options):
        getattr(self, "do_" + action.replace("-", "_"))(**options)

    def _organisation(self, name) -> Organisation:
        try:
            return Organisation.objects.get(name=name)
        except Organisation.DoesNotExist:
            raise CommandError(f"No organisation named {name!r}. Add it first.") from None

    def do_add(self, name, **_):
        organisation, created = Organisation.objects.get_or_create(name=name)
        self.stdout.write(f"{'Added' if created else 'Already registered'}: {organisation}")

    def do_token(self, name, label, **_):
        _token, plaintext = ApiToken.issue(self._organisation(name), label=label)
        self.stdout.write("New API token (shown once; store it in the sender's configuration):")
        self.stdout.write(plaintext)

    def do_node(self, name, ae, network, **_):
        node = DicomNode(
            organisation=self._organisation(name), ae_title=ae.strip(), network=network
        )
        try:
            node.full_clean()
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        node.save()
        self.stdout.write(f"Registered DICOM node {node} for {node.organisation}")

    def do_revoke_token(self, prefix, **_):
        count = ApiToken.objects.filter(prefix=prefix, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not count:
            raise CommandError(f"No live token with prefix {prefix!r}.")
        self.stdout.write(f"Revoked token {prefix}…")

    def do_list(self, **_):
        for organisation in Organisation.objects.prefetch_related("tokens", "nodes"):
            self.stdout.write(f"{organisation} ({'active' if organisation.is_active else 'off'})")
            for token in organisation.tokens.all():
                state = "revoked" if token.revoked_at else "live"
                self.stdout.write(
                    f"  token {token.prefix}… {state}, last used {token.last_used_at}"
                )
            for node in organisation.nodes.all():
                self.stdout.write(f"  node {node}")
