"""Settings for the patient imaging vault.

Every setting comes from the environment (see `.env.example`). With no environment at all the
site runs at once on the embedded default: SQLite and local files under `var/`.
"""

import os
import re
import secrets
import tempfile
from pathlib import Path

import dj_database_url
from botocore.config import Config as BotoConfig
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from phr.lib.env import envbool, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("PHR_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# The embedded default is a developer's machine; production says DEBUG=false.
DEBUG = envbool("DEBUG", True)
SITE_NAME = envstr("PHR_SITE_NAME", "Imaging Vault")


def _secret_key() -> str:
    configured = envstr("SECRET_KEY")
    if configured:
        return configured
    if not DEBUG:
        # A generated key on a production box would change on every new container and log
        # everybody out, or worse, be shared by accident: make the operator choose one.
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# TOTP secrets are encrypted with a key derived from this (see phr.lib.crypto). It defaults to
# SECRET_KEY so that a fresh clone works; production should set its own and keep it backed up.
FIELD_ENCRYPTION_KEY = envstr("PHR_FIELD_ENCRYPTION_KEY") or SECRET_KEY

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "axes",
    "accounts",
    "phr.core",
    "phr.vault",
    "phr.sharing",
    "phr.hospital",
    "phr.dicomweb",
    "phr.rights",
    "viewer",
    "phr.demo",
]

MIDDLEWARE = [
    # First: everything after it (rate limits, axes, the access log) sees the client's address.
    "phr.core.middleware.ClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.AbsoluteSessionLifetimeMiddleware",
    "accounts.middleware.SlidingSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.RequireTOTPMiddleware",
    # A doctor whose share has ended gets "This share has ended" (410), not a bare 404.
    "phr.sharing.middleware.EndedShareMiddleware",
    # Axes must come last: it turns a locked-out request into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "phr.urls"
WSGI_APPLICATION = "phr.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "phr.core.context_processors.site",
                "phr.vault.context_processors.inbox",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=envint("PHR_DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # Keep the connection between requests: opening one (and running the PRAGMAs
            # below) cost about a tenth of an upload request when profiled.
            "CONN_MAX_AGE": envint("PHR_DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                # WAL lets readers carry on while an upload writes; IMMEDIATE makes a writer
                # wait for the lock up front instead of failing half-way with "database locked".
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # Tests use a real file too (one per process): an in-memory database has table
            # locks that the WAL file in production never has, so browser tests would see
            # "table is locked" under parallel uploads.
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"phr-test-{os.getpid()}.sqlite3")},
        }
    }

# --- Cache: shared by every process, so rate limits and TOTP replay protection hold ----------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "phr_cache",
        }
    }

# --- Storage ---------------------------------------------------------------------------------
STORAGE_BACKEND = envstr("PHR_STORAGE", "filesystem")
MEDIA_ROOT = Path(envstr("PHR_MEDIA_ROOT", str(VAR_DIR / "media")))
# Media is never served by URL: every byte goes through a view that checks access first. No
# route maps this prefix; it is set only because Django's live test server insists on one.
MEDIA_URL = "/media-is-never-served-directly/"

# How long a signed download URL lives: an S3 presigned URL, or an nginx secure link below.
# Like any bearer URL it stays valid that long after a share is stopped, so keep it short.
PHR_SIGNED_URL_SECONDS = envint("PHR_S3_URL_EXPIRE_SECONDS", 300)

if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": envstr("PHR_S3_BUCKET", "phr-vault"),
            "endpoint_url": envstr("PHR_S3_ENDPOINT_URL") or None,
            "access_key": envstr("PHR_S3_ACCESS_KEY") or None,
            "secret_key": envstr("PHR_S3_SECRET_KEY") or None,
            "region_name": envstr("PHR_S3_REGION", "us-east-1"),
            "addressing_style": envstr("PHR_S3_ADDRESSING_STYLE", "path"),
            "signature_version": "s3v4",
            "default_acl": None,  # objects stay private; the bucket policy decides
            "querystring_auth": True,  # url() gives short-lived presigned URLs
            "querystring_expire": PHR_SIGNED_URL_SECONDS,
            "file_overwrite": True,  # keys are content hashes: same key, same bytes
            # Opened objects spill to a temp file past this, so a 1 GB study file never sits
            # in a worker's memory (django-storages' default keeps it all in memory).
            "max_memory_size": envint("PHR_S3_MAX_MEMORY_BYTES", 8 * 1024 * 1024),
            # Fail fast when the object store is down, so a patient sees "try again" quickly.
            "client_config": BotoConfig(
                # Given here too: a client_config replaces the option above, and presigned URLs
                # would fall back to the old SigV2 form.
                signature_version="s3v4",
                connect_timeout=envint("PHR_S3_CONNECT_TIMEOUT", 3),
                read_timeout=envint("PHR_S3_READ_TIMEOUT", 30),
                retries={"max_attempts": envint("PHR_S3_MAX_ATTEMPTS", 2), "mode": "standard"},
            ),
        },
    }
elif STORAGE_BACKEND == "filesystem":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    }
else:
    raise ImproperlyConfigured(f"PHR_STORAGE must be 'filesystem' or 's3', not {STORAGE_BACKEND!r}")

# On object storage, each series of 4 images or more is also kept as one object, its files back
# to back, so that the viewer fetches a CT in a few ranged requests instead of hundreds
# (phr/vault/bundles.py). "background": built in a thread after the viewer first asks for the
# series; "inline": built during that request (the tests, or a site that wants no threads);
# "off": never (the viewer fetches file by file).
PHR_SERIES_BUNDLES = envstr("PHR_SERIES_BUNDLES", "background")
if PHR_SERIES_BUNDLES not in ("background", "inline", "off"):
    raise ImproperlyConfigured("PHR_SERIES_BUNDLES must be 'background', 'inline' or 'off'.")

# Behind nginx: Django checks access, then hands the file to nginx with X-Accel-Redirect
# (e.g. "/protected-media/", an `internal` location aliased to MEDIA_ROOT). Empty: Django streams.
PHR_ACCEL_REDIRECT_PREFIX = envstr("PHR_ACCEL_REDIRECT_PREFIX")
# Behind nginx, faster still: Django hands out signed, expiring URLs under this prefix (e.g.
# "/vault-files/"), which nginx checks with its secure_link module and serves without asking
# Django again, like S3 presigned URLs (see viewer/securelink.py, deploy/nginx/phr.conf). Takes
# precedence over X-Accel-Redirect. Empty: off.
PHR_SECURE_LINK_PREFIX = envstr("PHR_SECURE_LINK_PREFIX")
PHR_SECURE_LINK_SECRET = envstr("PHR_SECURE_LINK_SECRET")
if PHR_SECURE_LINK_PREFIX:
    if not (PHR_SECURE_LINK_PREFIX.startswith("/") and PHR_SECURE_LINK_PREFIX.endswith("/")):
        raise ImproperlyConfigured("PHR_SECURE_LINK_PREFIX must be a path like /vault-files/.")
    # The same secret is written into nginx's config, inside a quoted string: letters, digits,
    # "-" and "_" only, so that it needs no escaping there; 32 or more, so it can't be guessed.
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,}", PHR_SECURE_LINK_SECRET):
        raise ImproperlyConfigured(
            "PHR_SECURE_LINK_SECRET must be set when PHR_SECURE_LINK_PREFIX is: at least 32 "
            "letters, digits, '-' or '_' (e.g. `openssl rand -hex 32`)."
        )
# Exposes window.viewerTestHook (displayed pixel statistics) for the browser tests.
PHR_VIEWER_TEST_HOOK = envbool("PHR_VIEWER_TEST_HOOK", False)
# How the viewer draws: "auto" (WebGL on a real GPU, a 2D canvas without WebGL or on a software
# rasteriser, as on many VDI desktops), or "gpu" / "cpu" to force one (the tests check both).
PHR_VIEWER_RENDERER = envstr("PHR_VIEWER_RENDERER", "auto")
if PHR_VIEWER_RENDERER not in ("auto", "gpu", "cpu"):
    raise ImproperlyConfigured("PHR_VIEWER_RENDERER must be auto, gpu or cpu.")

STATIC_URL = "/static/"
STATIC_ROOT = Path(envstr("PHR_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        # Hashed names need `collectstatic`, which production runs; the embedded default and
        # the tests serve straight from the source folders instead.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Uploads ---------------------------------------------------------------------------------
GiB = 1024**3
PHR_MAX_FILE_BYTES = envint("PHR_MAX_FILE_BYTES", 2 * GiB)
# A ZIP of a CD: unpacked bytes and entries are counted as they are read.
PHR_MAX_ZIP_BYTES = envint("PHR_MAX_ZIP_BYTES", 8 * GiB)
PHR_MAX_ZIP_ENTRIES = envint("PHR_MAX_ZIP_ENTRIES", 20_000)
# Deflated DICOM is inflated into a temp file to parse; this caps a deflate bomb.
PHR_MAX_INFLATED_BYTES = envint("PHR_MAX_INFLATED_BYTES", 2 * GiB)
# Uploads stream to disk past this size, so memory stays flat whatever the file size.
FILE_UPLOAD_MAX_MEMORY_SIZE = envint("PHR_UPLOAD_MEMORY_BYTES", 4 * 1024 * 1024)
# Beside the vault by default, not in the system temp folder: a large upload is then moved into a
# file-system vault by a rename instead of copied (/tmp is often another file system), and
# check_vault's stale-file sweep looks at this site's temp files only.
FILE_UPLOAD_TEMP_DIR = envstr("PHR_UPLOAD_TEMP_DIR") or str(VAR_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

# --- Accounts, sessions, MFA -----------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # allauth's, with the per-request user lookup in SQL (accounts/backends.py).
    "accounts.backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "vault:home"

# Idle timeout: the cookie and the server-side session both end an hour after the last request.
# accounts.middleware.SlidingSessionMiddleware refreshes the expiry at most once a minute, rather
# than writing the session on every request (a write per upload would serialise uploads).
# Django's database sessions, with the per-request read in SQL (accounts/sessions.py).
SESSION_ENGINE = "accounts.sessions"
SESSION_COOKIE_AGE = envint("PHR_SESSION_IDLE_SECONDS", 3600)
SESSION_REFRESH_SECONDS = 60
# Absolute limit, enforced by accounts.middleware.AbsoluteSessionLifetimeMiddleware.
SESSION_ABSOLUTE_SECONDS = envint("PHR_SESSION_ABSOLUTE_SECONDS", 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

ACCOUNT_FORMS = {"signup": "accounts.forms.PatientSignupForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = envstr("PHR_EMAIL_VERIFICATION", "optional" if DEBUG else "mandatory")
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_REAUTHENTICATION_TIMEOUT = envint("PHR_REAUTHENTICATION_SECONDS", 300)
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    # Failed logins: 10 a minute from one address, 5 per 5 minutes against one account.
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reauthenticate": "10/m/ip",
    "change_password": "5/m/user",
}

MFA_ADAPTER = "accounts.adapter.MFAAdapter"
MFA_FORMS = {"activate_totp": "accounts.forms.SpendingActivateTOTPForm"}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = SITE_NAME
# Tolerance 0: allauth remembers a used code for one TOTP period, so a wider window would let
# the same code be replayed once that memory lapses.
MFA_TOTP_TOLERANCE = 0
MFA_PASSKEY_LOGIN_ENABLED = False
# Enrolment is mandatory, so it must work before the address is verified (in the embedded
# default, where verification is optional). In production, login itself waits for verification.
MFA_ALLOW_UNVERIFIED_EMAIL = True
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG

# django-axes: the admin logs in through the same allauth login (so MFA applies); axes locks an
# account/address pair after repeated failures on top of allauth's rate limits.
AXES_FAILURE_LIMIT = envint("PHR_AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "accounts.axes.login_identifier"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "errors/locked_out.html"

# --- Sharing with doctors ------------------------------------------------------------------
# Codes, link tokens and PINs are stored only as HMACs under this key (see phr.lib.codes).
# Empty: a key derived from SECRET_KEY with HKDF. Changing it (or SECRET_KEY, when this is empty)
# makes every existing code and link stop working.
PHR_SHARE_KEY = envstr("PHR_SHARE_KEY")
# Failed attempts to open a share (wrong code, wrong PIN, ended share) before HTTP 429.
PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = envint("PHR_SHARE_FAILURES_PER_IP_PER_MINUTE", 10)
PHR_SHARE_FAILURES_SITE_PER_HOUR = envint("PHR_SHARE_FAILURES_SITE_PER_HOUR", 1000)
# Past that many failures site-wide, each failed check waits this long (slows every guesser at
# once; blocks nobody). phr/sharing/guessing.py and scripts/guessing_odds.py model the effect.
PHR_SHARE_SLOWDOWN_SECONDS = envfloat("PHR_SHARE_SLOWDOWN_SECONDS", 1.0)
# A doctor's single-image requests are counted in the access log in bulk, at most this long
# after the first of them (phr/sharing/tallies.py); 0 writes each one at once.
PHR_AUDIT_FLUSH_SECONDS = envfloat("PHR_AUDIT_FLUSH_SECONDS", 2.0)
# A doctor's access to one share ends at the share's expiry or after this, whichever is first.
PHR_DOCTOR_SESSION_SECONDS = envint("PHR_DOCTOR_SESSION_SECONDS", 12 * 3600)
# How long the new code, link and printable card stay visible to the patient after creating.
PHR_SHARE_REVEAL_SECONDS = envint("PHR_SHARE_REVEAL_SECONDS", 600)

# Hospital push: one STOW-RS request's size, a deposit code's default life, and the DIMSE
# listener's address (`manage.py dicom_listener`).
PHR_MAX_STOW_BYTES = envint("PHR_MAX_STOW_BYTES", 8 * GiB)
PHR_DEPOSIT_DAYS = envint("PHR_DEPOSIT_DAYS", 30)
PHR_DICOM_HOST = envstr("PHR_DICOM_HOST", "127.0.0.1")
PHR_DICOM_PORT = envint("PHR_DICOM_PORT", 11112)
# Associations at once (pynetdicom's own default is 10), and at most this many per hospital.
PHR_DICOM_MAX_ASSOCIATIONS = envint("PHR_DICOM_MAX_ASSOCIATIONS", 64)
PHR_DICOM_MAX_ASSOCIATIONS_PER_HOSPITAL = envint("PHR_DICOM_MAX_ASSOCIATIONS_PER_HOSPITAL", 16)
# DICOM TLS (PS3.15 Annex B): the listener's certificate and key (PEM), and, to require each
# hospital node to present a certificate, the CA that signs them. Unset: plain DIMSE.
PHR_DICOM_TLS_CERT = envstr("PHR_DICOM_TLS_CERT")
PHR_DICOM_TLS_KEY = envstr("PHR_DICOM_TLS_KEY")
PHR_DICOM_TLS_CA = envstr("PHR_DICOM_TLS_CA")
# The site's address as patients reach it (https://vault.example.org), for links in emails
# sent outside a web request: the DICOM listener's "images are waiting in your Inbox".
PHR_SITE_URL = envstr("PHR_SITE_URL", "").rstrip("/")

# --- Email -----------------------------------------------------------------------------------
EMAIL_BACKEND = envstr("PHR_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 587)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", f"{SITE_NAME} <no-reply@localhost>")

# --- HTTP security ---------------------------------------------------------------------------
HTTPS = envbool("PHR_HTTPS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# SecurityMiddleware sends HSTS only on HTTPS responses, so this is safe on plain HTTP too.
SECURE_HSTS_SECONDS = envint("PHR_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# Behind nginx or a load balancer: the scheme and the client's address come from the
# X-Forwarded-* headers the proxies add (phr/core/middleware.py). PHR_PROXY_COUNT: how many
# proxies, each appending to X-Forwarded-For, stand between the client and gunicorn.
PHR_BEHIND_PROXY = envbool("PHR_BEHIND_PROXY", False)
PHR_PROXY_COUNT = envint("PHR_PROXY_COUNT", 1)
if PHR_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # allauth shows the TOTP QR code as a data: image.
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "worker-src": [SELF],
        "form-action": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    }
}

# --- Misc ------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Magic-link tokens never reach a log line (phr.sharing.redact also filters the loggers
    # that write request paths, before any handler sees their records).
    "filters": {"redact_share_tokens": {"()": "phr.sharing.redact.RedactShareTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_share_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("PHR_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
