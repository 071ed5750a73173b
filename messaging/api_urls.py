from django.urls import path

from messaging import api

urlpatterns = [
    path("api/messages/", api.MessageListCreateView.as_view(), name="api-messages"),
    path("api/messages/<uuid:pk>/", api.MessageDetailView.as_view(), name="api-message-detail"),
    path("api/messages/<uuid:pk>/cancel/", api.CancelMessageView.as_view(), name="api-message-cancel"),
    path("api/messages/<uuid:pk>/retry/", api.RetryMessageView.as_view(), name="api-message-retry"),
]
