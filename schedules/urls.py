from django.urls import path

from schedules import api

urlpatterns = [
    path("api/schedules/", api.ScheduleListView.as_view(), name="schedules"),
    path("api/schedules/<int:pk>/", api.ScheduleDetailView.as_view(), name="schedule"),
    path("api/schedules/<int:pk>/toggle/", api.ToggleView.as_view(), name="schedule-toggle"),
    path("api/schedules/<int:pk>/trigger/", api.TriggerView.as_view(), name="schedule-trigger"),
    path("api/schedules/<int:pk>/executions/", api.ExecutionsView.as_view(), name="schedule-executions"),
]
