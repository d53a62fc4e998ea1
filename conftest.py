import os

# The tests use the quick-start fallbacks: the embedded PostgreSQL when DATABASE_URL is
# unset, in-process tasks when CELERY_BROKER_URL is unset, and a development secret.
os.environ.setdefault("MOLAM_QUICKSTART", "1")
