from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from bundles.views import BundlePushView
from devices.views import DeviceDetailView, DeviceListCreateView
from molam_offline.monitoring import views as monitoring_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("offline/devices", DeviceListCreateView.as_view(), name="device-list"),
    path("offline/devices/<str:device_id>", DeviceDetailView.as_view(), name="device-detail"),
    path("offline/bundles", BundlePushView.as_view(), name="bundle-push"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
]
