import logging

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from molam_offline.api import client_ip
from molam_offline.parsers import StrictJSONParser
from molam_offline.schema import ERROR_RESPONSES, REGISTRATION_EXAMPLE, ErrorSerializer
from molam_offline.throttling import RegistrationAddressThrottle, RegistrationUserThrottle

from .models import Device
from .permissions import IsPayAdmin
from .serializers import DeviceRegistrationSerializer, DeviceSerializer
from .services import DeviceAlreadyRegistered, register_device

logger = logging.getLogger(__name__)


class DevicePagination(CursorPagination):
    # CursorPagination orders by "-created" by default, a field that Device does not have.
    ordering = "-created_at"


class DeviceListCreateView(generics.ListAPIView):
    """GET lists registered devices; POST registers a device and its public key (pay_admin only)."""

    permission_classes = [IsPayAdmin]
    parser_classes = [StrictJSONParser]
    serializer_class = DeviceSerializer
    queryset = Device.objects.order_by("-created_at")
    filterset_fields = ["country", "status", "tenant_type"]
    pagination_class = DevicePagination

    def perform_authentication(self, request):
        # DRF checks throttles after authentication and permissions; the address throttle
        # runs first here so that guessing tokens is throttled too.
        if request.method == "POST":
            address_throttle = RegistrationAddressThrottle()
            if not address_throttle.allow_request(request, self):
                self.throttled(request, address_throttle.wait())
        super().perform_authentication(request)

    def get_throttles(self):
        return [RegistrationUserThrottle()] if self.request.method == "POST" else []

    @extend_schema(operation_id="register_device", request=DeviceRegistrationSerializer,
                   examples=[REGISTRATION_EXAMPLE], summary="Register a device and its public key",
                   responses={201: DeviceSerializer,
                              400: OpenApiResponse(ErrorSerializer, description="Invalid field; nothing stored."),
                              401: OpenApiResponse(ErrorSerializer, description="Missing or invalid token."),
                              403: OpenApiResponse(ErrorSerializer, description="The user is not a pay_admin."),
                              409: OpenApiResponse(ErrorSerializer, description="The device is already registered."),
                              **ERROR_RESPONSES})
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


