from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("scheduling.urls")),
    path("", include("scheduling.dashboard_urls")),
    path("", include("messaging.web.urls")),
    path("", include("campaigns.urls")),
]
