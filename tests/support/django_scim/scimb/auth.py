"""Bearer-token authentication: django-scim2 leaves authentication to the project."""
import hmac
import os

from django.contrib.auth.models import AnonymousUser


class _Service:
    """The API client, authenticated (django-scim2 only asks `is_authenticated`)."""

    is_authenticated = True
    is_anonymous = False


class BearerToken:
    def __init__(self, get_response):
        self.get_response = get_response
        self.expected = ("Bearer " + os.environ["SCIMB_TOKEN"]).encode()

    def __call__(self, request):
        got = request.META.get("HTTP_AUTHORIZATION", "").encode()
        request.user = _Service() if hmac.compare_digest(got, self.expected) else AnonymousUser()
        return self.get_response(request)
