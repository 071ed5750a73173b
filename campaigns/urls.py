from django.urls import path

from campaigns import api, pages

urlpatterns = [
    path("api/campaigns/", api.CampaignListCreateView.as_view(), name="api-campaigns"),
    path("api/campaigns/<int:pk>/", api.CampaignDetailView.as_view(), name="api-campaign-detail"),
    path("api/campaigns/<int:pk>/recipients/", api.RecipientsView.as_view(), name="api-campaign-recipients"),
    path("api/campaigns/<int:pk>/pause/", api.PauseView.as_view(), name="api-campaign-pause"),
    path("api/campaigns/<int:pk>/resume/", api.ResumeView.as_view(), name="api-campaign-resume"),
    path("api/campaigns/<int:pk>/cancel/", api.CancelView.as_view(), name="api-campaign-cancel"),
    path("campaigns/", pages.campaigns_page, name="campaigns-page"),
]
