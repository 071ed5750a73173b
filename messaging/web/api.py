"""Enqueue API: thin DRF views over messaging.services (staff session or DRF token, holding
the model permission: view to list and read, add to enqueue, change to cancel or retry).

POST /api/messages/                 queue a message (201; 200 for a repeated idempotency_key)
GET  /api/messages/?status=&channel= list, newest send_at first, ?limit=(1-500)&offset= pages
GET  /api/messages/<id>/            one message with its delivery attempts
POST /api/messages/<id>/cancel/     pending -> cancelled (409 otherwise)
POST /api/messages/<id>/retry/      failed/undelivered -> pending (409 otherwise)

Errors are {"error": "...", "fields": {...}} (config.api_errors shapes what these views raise).
"""

import logging
from collections.abc import Callable
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import QueryDict
from rest_framework import generics, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_paging import StrictLimitOffsetPagination
from config.api_permissions import ModelChangePermissions, StaffModelPermissions
from messaging.models import Channel, ScheduledMessage, Status
from messaging.services import IdempotencyConflict, cancel_message, retry_message, schedule_message
from messaging.web.serializers import EnqueueSerializer, MessageDetailSerializer, MessageSerializer

logger = logging.getLogger("messaging.web.api")

API_KEY_PREFIX = "api:"
LIST_FILTERS: dict[str, list[str]] = {"status": Status.values, "channel": Channel.values}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The message's state does not allow this."
    default_code = "conflict"


class MessagePagination(StrictLimitOffsetPagination):
    default_limit = 50
    max_limit = 500


def filter_messages(params: QueryDict) -> QuerySet[ScheduledMessage]:
    """The queue filtered by ?status= and ?channel=; an unknown value is a 400, not an empty page."""
    # -id breaks ties so that pages never repeat or skip a message with the same send_at.
    messages = ScheduledMessage.objects.order_by("-send_at", "-id")
    errors = {}
    for name, allowed in LIST_FILTERS.items():
        value = params.get(name, "")
        if not value:
            continue
        if value not in allowed:
            errors[name] = [f"Unknown {name} {value!r}; use one of: {', '.join(allowed)}."]
        else:
            messages = messages.filter(**{name: value})
    if errors:
        raise ValidationError(errors)
    return messages


def field_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """schedule_message()'s refusal (a dict naming each field) as DRF field errors."""
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"non_field_errors": exc.messages}


def conflict_detail(conflict: IdempotencyConflict, key: str) -> dict[str, list[str]]:
    """409 for a key reused with a different message: which fields differ, and what to do."""
    queued = conflict.message
    summary = (
        f"idempotency_key {key!r} is already used by message {queued.pk}, which differs in "
        f"{', '.join(conflict.differences)}. Send the same request again to get that message, "
        "or use a new key for a different message."
    )
    fields = {
        name: [f"Differs from the queued message, which has {value}."] for name, value in conflict.differences.items()
    }
    return {"non_field_errors": [summary], **fields}


class MessageListCreateView(generics.ListAPIView):
    permission_classes = [StaffModelPermissions]
    serializer_class = MessageSerializer
    pagination_class = MessagePagination

    def get_queryset(self) -> QuerySet[ScheduledMessage]:
        return filter_messages(self.request.query_params)

    def post(self, request: Request) -> Response:
        enqueue = EnqueueSerializer(data=request.data)
        enqueue.is_valid(raise_exception=True)
        fields = dict(enqueue.validated_data)
        key = fields.get("idempotency_key")
        if key:
            # The API's keys live in a namespace of their own: a caller's "missed-call:42"
            # must never match (and so silently suppress) the key a job derives.
            fields["idempotency_key"] = API_KEY_PREFIX + key
        try:
            message, created = schedule_message(**fields, source="api", strict_idempotency=True)
        except DjangoValidationError as exc:
            raise ValidationError(field_errors(exc)) from exc
        except IdempotencyConflict as conflict:
            raise Conflict(conflict_detail(conflict, key)) from conflict
        return Response(
            MessageSerializer(message).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MessageDetailView(generics.RetrieveAPIView):
    permission_classes = [StaffModelPermissions]
    serializer_class = MessageDetailSerializer
    queryset = ScheduledMessage.objects.prefetch_related("delivery_attempts")

    def get_object(self) -> ScheduledMessage:
        message = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if message is None:
            raise NotFound(f"No message with id {self.kwargs['pk']}.")
        self.check_object_permissions(self.request, message)
        return message


class MessageActionView(APIView):
    """An operator action that a message's state may not allow: 200 when done, 409 when not."""

    permission_classes = [ModelChangePermissions]
    queryset = ScheduledMessage.objects.all()  # names the model whose change permission is needed

    perform: Callable[[ScheduledMessage], bool]
    event: str
    refusal: str  # formatted with the message's current status

    def post(self, request: Request, pk: UUID) -> Response:
        message = ScheduledMessage.objects.filter(pk=pk).first()
        if message is None:
            raise NotFound(f"No message with id {pk}.")
        if not type(self).perform(message):
            raise Conflict(self.refusal.format(status=message.status))
        logger.info(self.event, extra={"message_id": str(message.pk), "user_id": request.user.pk})
        return Response(MessageSerializer(message).data)


class CancelMessageView(MessageActionView):
    perform = staticmethod(cancel_message)
    event = "message_cancelled"
    refusal = "Only pending messages can be cancelled; this one is {status}."


class RetryMessageView(MessageActionView):
    perform = staticmethod(retry_message)
    event = "message_retried"
    refusal = "Only failed or undelivered messages can be retried; this one is {status}."
