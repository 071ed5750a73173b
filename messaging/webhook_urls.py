from django.urls import path

from messaging import webhooks

urlpatterns = [
    path("webhooks/twilio/status/", webhooks.twilio_status, name="webhook-twilio-status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="webhook-twilio-inbound"),
    path("webhooks/resend/", webhooks.resend_events, name="webhook-resend"),
]
