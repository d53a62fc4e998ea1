from django.contrib import admin

from .models import Policy


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["country", "currency", "timezone", "max_offline_per_device_per_day",
                    "max_amount_per_device_per_day", "max_amount_per_transaction", "max_bundle_age_hours",
                    "max_clock_skew_minutes", "sira_review_threshold", "sira_quarantine_threshold", "is_active"]
    list_filter = ["is_active", "currency"]
    search_fields = ["country"]
    readonly_fields = ["updated_by", "created_at", "updated_at"]
