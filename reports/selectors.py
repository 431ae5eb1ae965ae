from incidents.models import Incident

from .models import PostIncidentReview


def incident_has_approved_review(*, incident: Incident) -> bool:
    return PostIncidentReview.objects.filter(
        incident=incident, state=PostIncidentReview.State.APPROVED
    ).exists()
