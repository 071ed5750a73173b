from django.urls import path

from scheduling import dashboard

urlpatterns = [
    path("cron/", dashboard.dashboard, name="cron-dashboard"),
    path("cron/<slug:name>/", dashboard.history, name="cron-history"),
    path("cron/<slug:name>/run/", dashboard.run_now, name="cron-run-now"),
    path("cron/<slug:name>/runs/<int:run_id>/", dashboard.run_page, name="cron-run"),
]
