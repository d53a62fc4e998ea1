import logging

from django.utils.translation import gettext as _
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from molam_offline.api import client_ip

from .models import Device
from .permissions import IsPayAdmin
from .serializers import DeviceRegistrationSerializer, DeviceSerializer
from .services import DeviceAlreadyRegistered, register_device

logger = logging.getLogger(__name__)


class NewestFirstPagination(CursorPagination):
    # CursorPagination orders by a `created` field unless told otherwise; devices have created_at.
    ordering = "-created_at"


class DeviceListCreateView(generics.ListAPIView):
    """GET lists registered devices; POST registers a device and its public key (pay_admin only)."""

    permission_classes = [IsPayAdmin]
    serializer_class = DeviceSerializer
    queryset = Device.objects.order_by("-created_at")
    filterset_fields = ["country", "status", "tenant_type"]
    pagination_class = NewestFirstPagination

    def post(self, request):
        serializer = DeviceRegistrationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        try:
            device = register_device(acting_user=request.user, ip_address=client_ip(request),
                                     **serializer.validated_data)
        except DeviceAlreadyRegistered as error:
            return Response({"detail": _("Device %(device_id)s is already registered. Replace its key from the "
                                         "admin instead of registering it again.") % {"device_id": error.device_id},
                             "errors": [{"path": "$.device_id", "code": "already_registered",
                                         "message": _("This device ID is already registered.")}]},
                            status=status.HTTP_409_CONFLICT)

        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailView(generics.RetrieveAPIView):
    permission_classes = [IsPayAdmin]
    serializer_class = DeviceSerializer
    queryset = Device.objects.all()
    lookup_field = "device_id"


