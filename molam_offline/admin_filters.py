"""Admin list filters that stay fast on tables with millions of rows."""

from django.contrib import admin


class RecentValuesFieldListFilter(admin.AllValuesFieldListFilter):
    """Offer the distinct values found in the newest SAMPLE_ROWS rows, not in the whole table.

    The stock filter runs SELECT DISTINCT over the table on every page view, which takes
    seconds at ten million transactions. A value that only older rows carry is missing
    from the list, but it still filters when given in the URL.
    """

    SAMPLE_ROWS = 10_000

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        newest = (model_admin.get_queryset(request).order_by("-pk")
                  .values_list(field_path, flat=True)[:self.SAMPLE_ROWS])
        values = set(newest)
        if self.lookup_val:
            values.update(self.lookup_val)
        self.lookup_choices = sorted(values, key=lambda value: (value is None, str(value)))
