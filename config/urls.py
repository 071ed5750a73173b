from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("scheduling.urls")),
    path("", include("scheduling.dashboard_urls")),
    path("", include("messaging.api_urls")),
    path("", include("messaging.webhook_urls")),
    path("", include("messaging.page_urls")),
]
