from django.urls import path

from messaging.web import api, pages, webhooks

urlpatterns = [
    path("api/messages/", api.MessageListCreateView.as_view(), name="api-messages"),
    path("api/messages/<uuid:pk>/", api.MessageDetailView.as_view(), name="api-message-detail"),
    path("api/messages/<uuid:pk>/cancel/", api.CancelMessageView.as_view(), name="api-message-cancel"),
    path("api/messages/<uuid:pk>/retry/", api.RetryMessageView.as_view(), name="api-message-retry"),
    path("webhooks/twilio/status/", webhooks.twilio_status, name="webhook-twilio-status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="webhook-twilio-inbound"),
    path("webhooks/resend/", webhooks.resend_events, name="webhook-resend"),
    path("scheduled/", pages.queue, name="scheduled-list"),
    path("scheduled/<uuid:message_id>/", pages.message_detail, name="scheduled-detail"),
    path("scheduled/<uuid:message_id>/cancel/", pages.cancel, name="scheduled-cancel"),
    path("scheduled/<uuid:message_id>/cancel/confirm/", pages.cancel_confirm, name="scheduled-cancel-confirm"),
    path("scheduled/<uuid:message_id>/retry/", pages.retry, name="scheduled-retry"),
]
