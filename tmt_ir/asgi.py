import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tmt_ir.settings")
django_application = get_asgi_application()

# Imported once Django is set up (the live app's modules use the ORM).
from incidents.live.asgi import limit_stream_setup  # noqa: E402

# The live pages' event streams are admitted a few at a time (incidents/live/asgi.py).
application = limit_stream_setup(django_application)
