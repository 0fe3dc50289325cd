import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phr.settings")
application = get_wsgi_application()

# Import every view now, while the worker boots, rather than on its first request: otherwise
# the first patient a fresh worker serves waits ~0.5 s for the imports (pydicom, boto3...).
every_url = get_resolver().url_patterns
