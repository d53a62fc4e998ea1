"""/healthz, /readyz and /metrics, the last through a real gunicorn with two workers."""

import re
import subprocess
import sys
import urllib.request

import pytest

from tests.monitoring_helpers import accept, reject
from tests.processes import BASE_DIR, free_port, stop_process, subprocess_env, wait_for_port


def test_healthz_without_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_skip_allowed_hosts_check(client):
    # Kubernetes probes address the pod by IP address, which ALLOWED_HOSTS does not list.
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")

    assert response.status_code == 200


@pytest.mark.django_db
def test_readyz_database_without_broker(client, settings):
    settings.CELERY_BROKER_URL = ""

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "broker": "not configured"}


@pytest.mark.django_db
@pytest.mark.slow
def test_readyz_with_real_redis(client, settings, redis_server):
    settings.CELERY_BROKER_URL = redis_server.url

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


@pytest.mark.django_db
def test_readyz_broker_down(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["broker"].startswith("unreachable")
    assert body["database"] == "ok"


@pytest.mark.django_db
def test_metrics_bearer_token(client, settings):
    settings.METRICS_BEARER_TOKEN = "scrape-secret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


@pytest.mark.django_db
def test_metrics_database_figures(client):
    accept(3)
    reject(2, "made_up_reason")

    text = client.get("/metrics").content.decode()

    assert 'molam_offline_bundles_last_hour{status="accepted"} 3.0' in text
    assert 'molam_offline_rejected_bundles_last_24h{known="false",reason="made_up_reason"} 2.0' in text
    assert "molam_offline_sync_queue_oldest_pending_age_seconds 0.0" in text
    assert "molam_offline_database_up 1.0" in text


def get(url, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post(url, body):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.django_db
def test_metrics_add_up_across_gunicorn_workers(tmp_path):
    # Rows of this test stay uncommitted, so gunicorn reads an empty bundle table: the
    # gauge below still shows that the figures come from PostgreSQL at scrape time.
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(BASE_DIR / "gunicorn.conf.py"), "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "molam_offline.wsgi:application"],
        cwd=BASE_DIR, env=subprocess_env(PROMETHEUS_MULTIPROC_DIR=tmp_path / "metrics"), stdout=log,
        stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        codes = [post(f"{base}/offline/bundles", b"{not json") for _ in range(8)]
        assert codes == [400] * 8

        # Either worker may serve a scrape, and every scrape must report all 8 pushes.
        scrapes = [get(f"{base}/metrics")[1] for _ in range(6)]
        health = get(f"{base}/healthz", Host="10.1.2.3")
    finally:
        stop_process(server)
        log.close()

    for text in scrapes:
        assert re.search(r'^molam_offline_bundle_pushes_total\{code="400"\} 8\.0$', text, re.M), text[:2000]
        assert 'molam_offline_bundles_last_hour{status="accepted"} 0.0' in text
        assert "molam_offline_database_up 1.0" in text
    assert health[0] == 200
    histogram_files = list((tmp_path / "metrics").glob("histogram_*.db"))
    assert len(histogram_files) == 2  # one per worker process
