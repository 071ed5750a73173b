from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "schedules"
    verbose_name = "Client schedules"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_save

        from messaging.models import Client

        pre_save.connect(_remember_zone, sender=Client, dispatch_uid="schedules-client-zone-before")
        post_save.connect(_follow_zone, sender=Client, dispatch_uid="schedules-client-zone-after")


def _remember_zone(sender: type, instance: object, **kwargs: object) -> None:
    """Note the client's stored timezone before a save (one query; clients are saved rarely)."""
    pk = getattr(instance, "pk", None)
    old = sender.objects.filter(pk=pk).values_list("timezone", flat=True).first() if pk else None  # type: ignore[attr-defined]
    instance._zone_before_save = old  # type: ignore[attr-defined]


def _follow_zone(sender: type, instance: object, created: bool, **kwargs: object) -> None:
    """The timezone changed: the client's schedules follow it once the change is committed."""
    from django.db import transaction

    from schedules.services import follow_client_zone

    old = getattr(instance, "_zone_before_save", None)
    if not created and old is not None and old != instance.timezone:  # type: ignore[attr-defined]
        transaction.on_commit(lambda: follow_client_zone(instance.pk))  # type: ignore[attr-defined]
