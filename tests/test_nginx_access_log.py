"""The shipped nginx site file (deploy/nginx/phr.conf), run in the real nginx with its access
log on, never writes a secret to that log (SECURITY.md item 12): share links, deposit codes,
account keys, image-link signatures, in the request line or in Referer."""

import pytest

from tests.support import nginx as nginx_support

TOKEN = "Zq3xK8vLmN2pR5tW7yB9cD1fG4hJ6kM0nP2rS4uV6wX"
CODE = "7KQ3-M9XA-2PD4-HV8T"
RESET_KEY = "1a-c3k9-0f4e2b7d9a1c3e5f7a9b"
CONFIRM_KEY = "MjQ:1tHw3x:Zk9aWc2qXh5Kj8"
SIGNATURE = "s=Wq0e1r2t3y4u5i6o7p8a9s&e=1999999999"


@pytest.fixture
def nginx_with_log(tmp_path):
    if not nginx_support.available():
        pytest.fail(f"{nginx_support.NGINX} is missing: `make nginx` (or `make test`) installs it")
    port = nginx_support.free_port()
    log = tmp_path / "access.log"
    server = nginx_support.site_server(
        port,
        media_root=tmp_path / "media",
        static_root=tmp_path / "static",
        # Nothing listens there: nginx answers 502 for what it would pass to Django, and logs it.
        upstream=f"127.0.0.1:{nginx_support.free_port()}",
        secret="x" * 32,
        access_log=log,
    )
    running = nginx_support.Nginx(tmp_path / "nginx", [server], port).start()
    yield running, log
    running.stop()


def test_no_secret_reaches_the_access_log(nginx_with_log):
    nginx, log = nginx_with_log
    origin = nginx.origin
    requests = [
        (f"/s/{TOKEN}", {}),
        (f"/s/{TOKEN}?next=1", {}),
        (f"/dicomweb/deposit/{CODE}/studies", {}),
        (f"/accounts/password/reset/key/{RESET_KEY}/", {}),
        (f"/accounts/confirm-email/{CONFIRM_KEY}/", {}),
        (f"/vault-files/ab/cd.dcm?{SIGNATURE}", {}),
        ("/static/site.css", {"Referer": f"{origin}/s/{TOKEN}"}),
        ("/static/site.css", {"Referer": f"{origin}/dicomweb/deposit/{CODE}/studies"}),
        ("/static/site.css", {"Referer": f"{origin}/accounts/confirm-email/{CONFIRM_KEY}/"}),
    ]
    for path, headers in requests:
        nginx.get(path, headers)
    nginx.stop()  # flushes the log

    logged = log.read_text()
    assert len(logged.splitlines()) == len(requests), logged
    for secret in (TOKEN, CODE, RESET_KEY, CONFIRM_KEY, "Wq0e1r2t3y4u5i6o7p8a9s"):
        assert secret not in logged
    assert '"GET /s/[redacted] HTTP/1.1" 502' in logged
    assert '"GET /s/[redacted]?next=1 HTTP/1.1"' in logged
    assert "/dicomweb/deposit/[redacted]/studies" in logged
    assert "/vault-files/ab/cd.dcm?[signature]" in logged
    assert f'"{origin}/s/[redacted]"' in logged
    # What isn't secret is logged as usual ("combined").
    assert '"GET /static/site.css HTTP/1.1" 404' in logged
