from django.urls import path

from messaging import pages

urlpatterns = [
    path("scheduled/", pages.queue, name="scheduled-list"),
    path("scheduled/<uuid:message_id>/", pages.message_detail, name="scheduled-detail"),
    path("scheduled/<uuid:message_id>/cancel/", pages.cancel, name="scheduled-cancel"),
    path("scheduled/<uuid:message_id>/retry/", pages.retry, name="scheduled-retry"),
]
