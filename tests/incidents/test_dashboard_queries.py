"""The dashboard's query count does not grow with the exercises under way."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import open_incident

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("drills", [1, 6])
def test_open_drills_cost_the_dashboard_no_query_each(engineer_client, engineer, django_assert_max_num_queries, drills):
    for n in range(drills):
        open_incident(reported_by=engineer, is_drill=True, title=f"Exercise {n}")
    open_incident(reported_by=engineer)
    with django_assert_max_num_queries(12):
        html = engineer_client.get(reverse("incidents:dashboard")).content.decode()
    assert html.count("Exercise ") == drills
