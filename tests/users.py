"""Staff users holding given model permissions ("app_label.codename")."""

from django.contrib.auth.models import Permission, User

MESSAGE_OPERATOR = (
    "messaging.view_scheduledmessage",
    "messaging.add_scheduledmessage",
    "messaging.change_scheduledmessage",
)
CAMPAIGN_OPERATOR = ("campaigns.view_campaign", "campaigns.add_campaign", "campaigns.change_campaign")
JOB_OPERATOR = ("scheduling.view_job", "scheduling.change_job", "scheduling.run_job")


def grant(user: User, *perms: str) -> User:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    # A fresh instance: the old one may have cached the permissions it had before.
    return User.objects.get(pk=user.pk)


def staff_user(name: str, *perms: str, password: str = "pw-for-tests") -> User:
    return grant(User.objects.create_user(username=name, password=password, is_staff=True), *perms)
