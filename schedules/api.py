"""Client schedules over HTTP: `/api/schedules/` (DRF token or staff session with the model
permission; see DESIGN "Interface, second part")."""

from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_paging import StrictLimitOffsetPagination
from config.api_permissions import ModelChangePermissions, StaffModelPermissions
from schedules.models import ClientSchedule
from schedules.serializers import ExecutionSerializer, ScheduleSerializer
from schedules.services import execution_stats, save_schedule, trigger_now


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class _Api(APIView):
    permission_classes = [StaffModelPermissions]
    queryset = ClientSchedule.objects.all()


class ScheduleListView(_Api):
    def get(self, request: Request) -> Response:
        items = ClientSchedule.objects.select_related("client").order_by("pk")
        client = request.query_params.get("client", "")
        if client:
            if not client.isdigit():
                raise ValidationError({"client": [f"must be a client id (a whole number), not {client!r}"]})
            items = items.filter(client_id=int(client))
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ScheduleSerializer(page, many=True).data)

    def post(self, request: Request) -> Response:
        serializer = ScheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = save_schedule(ClientSchedule(**serializer.validated_data), changed=set())
        return Response(ScheduleSerializer(item).data, status=201)


class ScheduleDetailView(_Api):
    def get(self, request: Request, pk: int) -> Response:
        return Response(ScheduleSerializer(get_object_or_404(ClientSchedule, pk=pk)).data)

    def patch(self, request: Request, pk: int) -> Response:
        item = get_object_or_404(ClientSchedule, pk=pk)
        serializer = ScheduleSerializer(item, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changed = {name for name, value in serializer.validated_data.items() if getattr(item, name) != value}
        for name, value in serializer.validated_data.items():
            setattr(item, name, value)
        return Response(ScheduleSerializer(save_schedule(item, changed)).data)

    def delete(self, request: Request, pk: int) -> Response:
        get_object_or_404(ClientSchedule, pk=pk).delete()
        return Response(status=204)


class _Action(_Api):
    permission_classes = [ModelChangePermissions]


class ToggleView(_Action):
    def post(self, request: Request, pk: int) -> Response:
        item = get_object_or_404(ClientSchedule, pk=pk)
        item.enabled = not item.enabled
        return Response(ScheduleSerializer(save_schedule(item, {"enabled"})).data)


class TriggerView(_Action):
    def post(self, request: Request, pk: int) -> Response:
        item = get_object_or_404(ClientSchedule.objects.select_related("client"), pk=pk)
        try:
            execution = trigger_now(item)
        except ValueError as exc:
            raise Conflict(str(exc)) from exc
        code = 200 if execution.status == "fired" else 500
        return Response(ExecutionSerializer(execution).data, status=code)


class ExecutionsView(_Api):
    def get(self, request: Request, pk: int) -> Response:
        item = get_object_or_404(ClientSchedule, pk=pk)
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(item.executions.all(), request, view=self)
        response = paginator.get_paginated_response(ExecutionSerializer(page, many=True).data)
        if request.query_params.get("stats", "").lower() in ("1", "true", "yes"):
            response.data["stats"] = execution_stats(item)
        return response
