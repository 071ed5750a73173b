"""Who may call the staff APIs: a staff user (session or DRF token; superusers always pass)
holding the Django model permission the request needs.

DRF's DjangoModelPermissions lets any authenticated user read (GET needs no permission) and
maps every POST to "add"; here reading needs "view", and an action on an existing object
(cancel, retry: a POST) declares "change" with `ModelChangePermissions`.
"""

from typing import Any

from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request

VIEW = "%(app_label)s.view_%(model_name)s"
ADD = "%(app_label)s.add_%(model_name)s"
CHANGE = "%(app_label)s.change_%(model_name)s"
DELETE = "%(app_label)s.delete_%(model_name)s"


class StaffModelPermissions(DjangoModelPermissions):
    """GET/HEAD/OPTIONS need view, POST add, PUT/PATCH change, DELETE delete, on the model of
    the view's queryset."""

    perms_map = {
        "GET": [VIEW],
        "HEAD": [VIEW],
        "OPTIONS": [VIEW],
        "POST": [ADD],
        "PUT": [CHANGE],
        "PATCH": [CHANGE],
        "DELETE": [DELETE],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not (user.is_staff or user.is_superuser):
            return False
        return super().has_permission(request, view)


class ModelChangePermissions(StaffModelPermissions):
    """For views whose POST changes an existing object: POST needs change, not add."""

    perms_map = {**StaffModelPermissions.perms_map, "POST": [CHANGE]}
