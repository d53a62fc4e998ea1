FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN DJANGO_SECRET_KEY=collectstatic DATABASE_URL=postgres://unused/unused \
    python manage.py collectstatic --noinput \
 && useradd --system --uid 10001 --home /app molam && chown -R molam /app

USER molam
EXPOSE 8000
CMD ["gunicorn", "molam_offline.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
