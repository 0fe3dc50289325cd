import factory
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from accounts.models import User

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"patient{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified_email(self, create, extracted, **kwargs):
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


def enrol_totp(user) -> str:
    """Give the user an authenticator app, as enrolment would; return the plaintext secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def has_authenticator(user, kind=Authenticator.Type.TOTP) -> bool:
    return Authenticator.objects.filter(user=user, type=kind).exists()
