"""The Celery side: the app, queue routing, worker flags and the embedded in-process worker."""
