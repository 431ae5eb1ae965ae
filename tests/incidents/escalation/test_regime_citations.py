"""The seeded regimes say where each clock starts, and the UK final report's citation names the
anchor the portal assumes (the incident's resolution), so a reader knows what to check."""

import pytest

from incidents.escalation.models import RegimeStage

pytestmark = pytest.mark.django_db


def test_the_uk_final_report_runs_from_resolution_and_its_citation_says_so():
    final = RegimeStage.objects.get(regime__key="uk-oir", key="final")
    assert final.anchor == RegimeStage.Anchor.RESOLUTION and final.within_working_days == 30
    assert "30 working days of the incident being resolved" in final.citation
    assert "Assumed anchor" in final.citation and "reopening keeps" in final.citation
    assert "resolution" in final.regime.citation


def test_every_seeded_stage_cites_its_text():
    assert not RegimeStage.objects.filter(citation="").exclude(regime__is_default=True).exists()
