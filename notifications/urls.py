from django.urls import path

from notifications import views

urlpatterns = [
    path("notifications/", views.inbox, name="notifications"),
    path("notifications/preferences/", views.preferences, name="notification-preferences"),
]
