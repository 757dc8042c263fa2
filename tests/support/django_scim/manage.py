#!/usr/bin/env python3
"""The second SCIM server of the tests: django-scim2 (PyPI) in the smallest Django project
that runs it. Everything SCIM (routes, filters, PATCH, PUT, paging, errors) is the
library's; this project only gives it a user model, a database and a bearer token.

Environment: SCIMB_PORT (the loopback port, also the URLs it writes in `location`),
SCIMB_TOKEN (the bearer token it accepts), SCIMB_DB (the SQLite file, made fresh)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scimb.settings")

from django.core.management import execute_from_command_line  # noqa: E402

execute_from_command_line(sys.argv)
