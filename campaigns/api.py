"""Campaigns API: thin DRF views over campaigns.services (staff session or DRF token).

POST /api/campaigns/                      create (201, status queued)
GET  /api/campaigns/?status=              list, newest first, ?limit=&offset= pages
GET  /api/campaigns/<id>/                 one campaign with counts per recipient state and in_flight
POST /api/campaigns/<id>/recipients/      {"leads": [ids]} | {"contacts": [...]} | a text/csv body
POST /api/campaigns/<id>/pause/ | resume/ | cancel/   (409 when the state does not allow it)

Errors are {"error": "...", "fields": {...}} (config.api_errors shapes what these views raise).
"""

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.models import Campaign, CampaignStatus
from campaigns.selectors import recipient_counts
from campaigns.serializers import CampaignCreateSerializer, CampaignSerializer, RecipientsSerializer
from campaigns.services import (
    CampaignConflict,
    add_contacts,
    add_csv,
    add_leads,
    cancel_campaign,
    create_campaign,
    pause_campaign,
    resume_campaign,
)
from config.api_permissions import ModelChangePermissions, StaffModelPermissions
from messaging.web.api import Conflict, MessagePagination, field_errors

logger = logging.getLogger("campaigns.api")


class CSVParser(BaseParser):
    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> str:
        try:
            return stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("The CSV is not UTF-8 text; save it as UTF-8 and send it again.") from exc


def get_campaign(pk: int) -> Campaign:
    campaign = Campaign.objects.select_related("client").filter(pk=pk).first()
    if campaign is None:
        raise NotFound(f"No campaign with id {pk}.")
    return campaign


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    return CampaignSerializer(campaign, context={"counts": recipient_counts([campaign.pk])}).data


class CampaignListCreateView(generics.ListAPIView):
    pagination_class = MessagePagination
    permission_classes = [StaffModelPermissions]

    def get_queryset(self) -> QuerySet[Campaign]:
        campaigns = Campaign.objects.order_by("-created_at", "-id")
        value = self.request.query_params.get("status", "")
        if value:
            if value not in CampaignStatus.values:
                raise ValidationError(
                    {"status": [f"Unknown status {value!r}; use one of: {', '.join(CampaignStatus.values)}."]}
                )
            campaigns = campaigns.filter(status=value)
        return campaigns

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        counts = recipient_counts(c.pk for c in page)
        return self.get_paginated_response(CampaignSerializer(page, many=True, context={"counts": counts}).data)

    def post(self, request: Request) -> Response:
        create = CampaignCreateSerializer(data=request.data)
        create.is_valid(raise_exception=True)
        try:
            campaign = create_campaign(**create.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(field_errors(exc)) from exc
        return Response(campaign_data(campaign), status=status.HTTP_201_CREATED)


class CampaignDetailView(APIView):
    permission_classes = [StaffModelPermissions]
    queryset = Campaign.objects.all()

    def get(self, request: Request, pk: int) -> Response:
        return Response(campaign_data(get_campaign(pk)))


class RecipientsView(APIView):
    parser_classes = [JSONParser, CSVParser]
    permission_classes = [ModelChangePermissions]  # adding recipients changes the campaign
    queryset = Campaign.objects.all()

    def post(self, request: Request, pk: int) -> Response:
        campaign = get_campaign(pk)
        try:
            if isinstance(request.data, str):
                result = add_csv(campaign, request.data)
            else:
                given = RecipientsSerializer(data=request.data)
                given.is_valid(raise_exception=True)
                if "leads" in given.validated_data:
                    result = add_leads(campaign, given.validated_data["leads"])
                else:
                    result = add_contacts(campaign, given.validated_data["contacts"])
        except DjangoValidationError as exc:
            raise ValidationError(field_errors(exc)) from exc
        except CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        logger.info("campaign_recipients_posted", extra={"campaign_id": campaign.pk, "added": result.added})
        return Response(result.as_dict())


class CampaignActionView(APIView):
    perform: Callable[[Campaign], Campaign]
    permission_classes = [ModelChangePermissions]
    queryset = Campaign.objects.all()

    def post(self, request: Request, pk: int) -> Response:
        try:
            campaign = type(self).perform(get_campaign(pk))
        except CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        logger.info("campaign_action", extra={"campaign_id": campaign.pk, "status": campaign.status})
        return Response(campaign_data(campaign))


class PauseView(CampaignActionView):
    perform = staticmethod(pause_campaign)


class ResumeView(CampaignActionView):
    perform = staticmethod(resume_campaign)


class CancelView(CampaignActionView):
    perform = staticmethod(cancel_campaign)
