from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config import views
from observability.views import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="cron-dashboard"), name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("", include("scheduling.urls")),
    path("", include("scheduling.dashboard_urls")),
    path("", include("messaging.web.urls")),
    path("", include("notifications.urls")),
    path("", include("schedules.urls")),
    path("", include("campaigns.urls")),
    path("metrics", metrics, name="metrics"),
]
