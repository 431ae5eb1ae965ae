import pytest

from .helpers import user_in


@pytest.fixture
def cto(db):
    return user_in("CTO", "cto_reviewer", first_name="Carla", last_name="Cto")


@pytest.fixture
def head_of_risk(db):
    return user_in("Head of Risk Management", "hrm", first_name="Harriet", last_name="Risk")
