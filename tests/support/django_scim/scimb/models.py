"""The user model django-scim2 documents: Django's user plus its SCIM columns, and a group.

django-scim2's group adapter reads and writes a group's members as `group.user_set` (the shape
of Django's own auth.Group), so the relation is declared on the user, under Django's default
reverse name.
"""
from django.contrib.auth.models import AbstractUser
from django.db import models
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class Group(AbstractSCIMGroupMixin):
    name = models.CharField(max_length=150)


class User(AbstractSCIMUserMixin, AbstractUser):
    scim_groups = models.ManyToManyField(Group, blank=True)
