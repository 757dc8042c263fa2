"""Django settings for the test server: loopback only, a temporary SQLite file, no admin."""
import os

SECRET_KEY = "rostersync-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_scim", "scimb"]
MIDDLEWARE = ["scimb.auth.BearerToken"]
ROOT_URLCONF = "scimb.urls"
AUTH_USER_MODEL = "scimb.User"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["SCIMB_DB"],
        # Requests may overlap: wait for the write lock rather than fail.
        "OPTIONS": {"timeout": 20},
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SCIM_SERVICE_PROVIDER = {
    "NETLOC": "127.0.0.1:" + os.environ["SCIMB_PORT"],
    "SCHEME": "http",
    "GROUP_MODEL": "scimb.models.Group",
    "AUTHENTICATION_SCHEMES": [
        {"type": "oauthbearertoken", "name": "Bearer token", "description": "a static bearer token"}
    ],
}
LOGGING = {"version": 1, "disable_existing_loggers": True}
