from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from bundles.views import BundlePushView
from devices.views import DeviceDetailView, DeviceListCreateView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("offline/devices", DeviceListCreateView.as_view(), name="device-list"),
    path("offline/devices/<str:device_id>", DeviceDetailView.as_view(), name="device-detail"),
    path("offline/bundles", BundlePushView.as_view(), name="bundle-push"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
]
