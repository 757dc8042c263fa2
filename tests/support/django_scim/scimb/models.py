"""The user model django-scim2 documents: Django's user plus its SCIM columns."""
from django.contrib.auth.models import AbstractUser
from django.db import models
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class User(AbstractSCIMUserMixin, AbstractUser):
    pass


class Group(AbstractSCIMGroupMixin):
    name = models.CharField(max_length=150)
    members = models.ManyToManyField(User, related_name="scim_groups")
